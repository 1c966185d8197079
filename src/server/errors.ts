import type { ErrorRequestHandler, RequestHandler } from 'express'
import { ZodError, type ZodIssue } from 'zod'
import { ExitCode, WardenError } from '../core/errors.js'
import type { Logger } from './logger.js'

/** The one error body of the admin API: `{"error": {"code", "message"}}`, never a stack trace. */
export interface ErrorBody {
  error: { code: string; message: string }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** WardenError messages are written for users (complete, secrets redacted): they can be returned as is. */
const BY_EXIT_CODE: Partial<Record<number, { status: number; code: string }>> = {
  [ExitCode.usage]: { status: 400, code: 'invalid_request' },
  [ExitCode.locked]: { status: 409, code: 'sweep_running' },
  [ExitCode.unavailable]: { status: 503, code: 'database_unavailable' },
  // At run time a configuration error means the mapping no longer matches the table (a column renamed).
  [ExitCode.config]: { status: 503, code: 'misconfigured' },
  [ExitCode.failed]: { status: 500, code: 'statement_failed' },
}

function describeIssue(issue: ZodIssue, where: string): string {
  if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => `${key}: unknown ${where}`).join('; ')
  const path = issue.path.join('.')
  return `${path || (where === 'field' ? 'body' : 'query')}: ${issue.message}`
}

/** A zod failure as a 400 that names each field, e.g. "limit: expected an integer from 1 to 1000". */
export function validationError(error: ZodError, where: 'field' | 'query parameter'): ApiError {
  return new ApiError(400, 'invalid_request', error.issues.map((issue) => describeIssue(issue, where)).join('; '))
}

export function toApiError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error
  if (error instanceof ZodError) return validationError(error, 'field')
  if (error instanceof WardenError) {
    if (error.exitCode === ExitCode.locked && error.sqlstate === '55P03') return new ApiError(409, 'table_locked', error.message)
    const mapped = BY_EXIT_CODE[error.exitCode]
    if (mapped) return new ApiError(mapped.status, mapped.code, error.hint ? `${error.message} (${error.hint})` : error.message)
  }
  // body-parser's errors carry a status and a type; their messages say nothing of the server
  const http = error as { status?: number; type?: string; expose?: boolean; message?: string }
  if (http.type === 'entity.parse.failed') return new ApiError(400, 'invalid_json', `the request body is not valid JSON: ${http.message}`)
  if (http.type === 'entity.too.large') return new ApiError(413, 'payload_too_large', 'the request body is too large')
  if (typeof http.status === 'number' && http.status >= 400 && http.status < 500 && http.expose)
    return new ApiError(http.status, 'bad_request', http.message ?? 'bad request')
  return undefined
}

export function sendError(res: Parameters<RequestHandler>[1], error: ApiError): void {
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value)
  const body: ErrorBody = { error: { code: error.code, message: error.message } }
  res.status(error.status).json(body)
}

export const notFound: RequestHandler = (req, res) => {
  sendError(res, new ApiError(404, 'not_found', `no route ${req.method} ${req.path}`))
}

/** Known errors become their status; anything else is logged with its stack and answered 500 with the request id. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error)
    const known = toApiError(error)
    if (known) {
      if (known.status >= 500) logger.error({ requestId: req.id, code: known.code, error: known.message }, 'request failed')
      return sendError(res, known)
    }
    logger.error({ requestId: req.id, err: error }, 'unexpected error')
    sendError(res, new ApiError(500, 'internal', `internal error; the service log has the details (request id ${req.id})`))
  }
}
