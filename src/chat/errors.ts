import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  PermissionDeniedError,
  RateLimitError,
} from '@anthropic-ai/sdk'

/**
 * Every failure of the chat path reaches the client as `{error: {code, message}}` with one of
 * these codes: stable strings clients and the load test branch on; messages are for people.
 */
export type ChatErrorCode =
  | 'invalid_json'
  | 'invalid_request'
  | 'payload_too_large'
  | 'message_too_large'
  | 'not_found'
  | 'session_not_found'
  | 'session_exists'
  | 'session_ended'
  | 'turn_conflict'
  | 'pool_timeout'
  | 'database_unavailable'
  | 'database_error'
  | 'llm_auth_failed'
  | 'llm_rate_limited'
  | 'llm_unavailable'
  | 'llm_error'
  | 'llm_timeout'
  | 'shutting_down'
  | 'internal_error'

export class ChatError extends Error {
  constructor(
    readonly status: number,
    readonly code: ChatErrorCode,
    message: string,
    /** what the server log gets; the client sees only the message */
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'ChatError'
  }

  toBody(): { error: { code: ChatErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } }
  }
}

/** Why an LLM call ended early: a deadline of ours, or the client that asked for it went away. */
export type AbortReason = 'timeout' | 'client_disconnect' | 'shutdown'

/**
 * A failed LLM call as the chat path records it: `errorType` is the low-cardinality
 * error_type of the duration metric and of the llm_requests row; `chatError` is what the
 * client gets. A timeout is 504, anything else the endpoint did or failed to do is 502: the
 * chat server is a gateway to the model, and the fault is upstream.
 */
export interface LlmFailure {
  errorType: string
  chatError: ChatError
  requestId: string | null
}

export function classifyLlmError(error: unknown, abortReason: AbortReason | undefined, timeoutMs: number): LlmFailure {
  const requestId = error instanceof APIError ? (error.requestID ?? null) : null
  const fail = (errorType: string, status: number, code: ChatErrorCode, message: string): LlmFailure => ({
    errorType,
    requestId,
    chatError: new ChatError(status, code, message),
  })
  if (error instanceof APIUserAbortError || abortReason !== undefined) {
    if (abortReason === 'client_disconnect')
      return fail('cancelled', 499, 'llm_error', 'the client disconnected; the LLM call was cancelled')
    if (abortReason === 'shutdown')
      return fail('cancelled', 503, 'shutting_down', 'the server is shutting down; the LLM call was cancelled')
    return fail('timeout', 504, 'llm_timeout', `the LLM did not answer within ${timeoutMs} ms`)
  }
  if (error instanceof APIConnectionTimeoutError)
    return fail('timeout', 504, 'llm_timeout', 'the LLM endpoint sent no response in time (SDK timeout)')
  if (error instanceof APIConnectionError) {
    const cause = (error.cause as { cause?: { code?: string }; code?: string } | undefined) ?? {}
    const code = cause.code ?? cause.cause?.code
    return fail('connection_error', 502, 'llm_unavailable', `cannot reach the LLM endpoint${code ? ` (${code})` : ''}: ${error.message}`)
  }
  if (error instanceof AuthenticationError || error instanceof PermissionDeniedError) {
    return fail(
      String(error.status),
      502,
      'llm_auth_failed',
      `the LLM endpoint rejected the API key (HTTP ${error.status}); check the chat path's LLM API key`,
    )
  }
  if (error instanceof RateLimitError)
    return fail('429', 502, 'llm_rate_limited', 'the LLM endpoint is rate limiting (HTTP 429) after retries; try again later')
  if (error instanceof APIError) {
    // A mid-stream error event carries no status, only the error type of its body.
    const errorType = error.status !== undefined ? String(error.status) : (error.type ?? 'api_error')
    return fail(
      errorType,
      502,
      'llm_error',
      `the LLM endpoint failed (${error.status !== undefined ? `HTTP ${error.status}` : 'mid-stream'}${error.type ? `, ${error.type}` : ''})`,
    )
  }
  return fail(
    error instanceof Error ? error.name : 'error',
    502,
    'llm_error',
    `the LLM call failed: ${error instanceof Error ? error.message : String(error)}`,
  )
}

const POOL_TIMEOUT_MESSAGES = ['timeout exceeded when trying to connect', 'Connection terminated due to connection timeout']

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
/** Server going away or not there yet (57P01-03), too many clients, and conflicts a retry resolves. */
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01'])
const CONNECTION_LOST = /Connection terminated|connection error and is not queryable|Client was closed and is not queryable/i

/**
 * Whether a database failure may pass if the same statement runs again shortly: the connection
 * or the server went away (a restart, a failover), or the pool had no connection free. Bad data
 * and constraint violations are not: retrying them changes nothing.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  if (error instanceof ChatError) {
    if (error.code === 'pool_timeout' || error.code === 'database_unavailable') return true
    return error.cause !== undefined && isTransientDatabaseError(error.cause)
  }
  const err = error as (Error & { code?: unknown; errors?: unknown[] }) | null
  if (!err) return false
  const code = typeof err.code === 'string' ? err.code : undefined
  if (code && (CONNECTION_CODES.has(code) || TRANSIENT_SQLSTATES.has(code) || code.startsWith('08'))) return true
  // Connecting to "localhost" tries ::1 and 127.0.0.1 and fails with an AggregateError of both.
  if (Array.isArray(err.errors) && err.errors.some(isTransientDatabaseError)) return true
  return typeof err.message === 'string' && (CONNECTION_LOST.test(err.message) || POOL_TIMEOUT_MESSAGES.includes(err.message))
}

/** Database failures: pool exhaustion and an unreachable server are 503s the client may retry; the rest are 500s whose detail stays in the log. */
export function databaseError(error: unknown): ChatError {
  if (error instanceof ChatError) return error
  const message = error instanceof Error ? error.message : String(error)
  if (POOL_TIMEOUT_MESSAGES.includes(message))
    return new ChatError(503, 'pool_timeout', 'no database connection became free in time (pool exhausted); try again')
  if (isTransientDatabaseError(error))
    return new ChatError(503, 'database_unavailable', 'the database is unreachable (restarting?); try again', {
      cause: error,
    })
  return new ChatError(500, 'database_error', 'the database failed; see the server log', { cause: error })
}
