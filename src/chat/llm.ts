import Anthropic from '@anthropic-ai/sdk'
import type { Message, MessageParam, MessageStreamEvent, Tool } from '@anthropic-ai/sdk/resources/messages'
import { llmCall } from '../pool/instrumented-pool.js'
import { withAbortReason, type Fetch } from './attempts.js'
import { classifyLlmError, type AbortReason, type LlmFailure } from './errors.js'
import type { ChatMetrics } from './metrics.js'
import { NO_USAGE, tokensAtLeast, totalInputTokens, usageOf, type CallUsage } from './usage.js'

export interface LlmSettings {
  /** the mock (`warden mock-llm`) or a real Anthropic-compatible endpoint; the code path is the same */
  baseURL: string
  apiKey: string
  /** SDK retries of 408/409/429/5xx with backoff; each retry lengthens a failing call. Default 1 */
  maxRetries?: number
  /** the SDK's wait for response headers. Default 60 s */
  timeoutMs?: number
}

/**
 * Builds the SDK client once per router. `fetch` is the router's attempt counter
 * (warden_llm_attempts_total): a factory that drops it loses that metric, nothing else.
 */
export type AnthropicFactory = (options: { fetch: Fetch }) => Anthropic

/** The real SDK, configured once; the chat router calls the factory once and reuses the client (and its connections). */
export const anthropicFactory =
  (s: LlmSettings): AnthropicFactory =>
  ({ fetch }) =>
    new Anthropic({ baseURL: s.baseURL, apiKey: s.apiKey, maxRetries: s.maxRetries ?? 1, timeout: s.timeoutMs ?? 60_000, fetch })

export interface ModelCallSettings {
  client: Anthropic
  model: string
  maxTokens: number
  system?: string
  tools?: Tool[]
  metrics: ChatMetrics
  /** deadline of one call, streaming included (the SDK's own timeout covers the headers only) */
  timeoutMs: number
}

export interface ModelCallRequest {
  messages: MessageParam[]
  stream: boolean
  /** aborts the call: the client went away, or the server is shutting down */
  signal: AbortSignal
  abortReason: () => AbortReason | undefined
  /** streaming: the endpoint answered (response headers in) */
  onConnect?: () => void
  onText?: (text: string) => void
}

export interface ModelCallResult {
  message: Message
  requestId: string | null
  latencyMs: number
  usage: CallUsage
}

/**
 * A failed call, with what its cost row and the client's answer need. A stream that had started
 * was billed: `usage` has its input (from message_start) and the output received so far.
 */
export class LlmCallFailed extends Error {
  constructor(
    readonly failure: LlmFailure,
    readonly latencyMs: number,
    readonly usage: CallUsage,
    readonly requestId: string | null,
  ) {
    super(failure.chatError.message)
    this.name = 'LlmCallFailed'
  }
}

export const PROVIDER = 'anthropic'
const OPERATION = 'chat'

/** What a stream delivered so far, for the chunk timings and for billing a stream that breaks off. */
class StreamWatch {
  started?: CallUsage
  responseModel?: string
  reportedOutput = 0
  received = ''
  private lastChunkAt?: number

  constructor(
    private readonly metrics: ChatMetrics,
    private readonly requestModel: string,
    private readonly issuedAt: number,
  ) {}

  readonly onEvent = (event: MessageStreamEvent): void => {
    if (event.type === 'message_start') {
      this.started = usageOf(event.message.usage)
      this.responseModel = event.message.model
    } else if (event.type === 'message_delta') {
      this.reportedOutput = event.usage.output_tokens
    } else if (event.type === 'content_block_start') {
      this.received += ' '
    } else if (event.type === 'content_block_delta') {
      const now = performance.now()
      const labels = operationLabels(this.requestModel, this.responseModel)
      if (this.lastChunkAt === undefined) this.metrics.timeToFirstChunk.observe(labels, (now - this.issuedAt) / 1000)
      else this.metrics.timePerOutputChunk.observe(labels, (now - this.lastChunkAt) / 1000)
      this.lastChunkAt = now
      const { delta } = event
      if (delta.type === 'text_delta') this.received += delta.text
      else if (delta.type === 'input_json_delta') this.received += delta.partial_json
    }
  }

  /** Billed usage of a stream that ended early; nothing when the provider never started answering. */
  partialUsage(): CallUsage {
    if (!this.started) return NO_USAGE
    return { ...this.started, outputTokens: Math.max(this.started.outputTokens, this.reportedOutput, tokensAtLeast(this.received)) }
  }
}

const operationLabels = (requestModel: string, responseModel: string | undefined) => ({
  gen_ai_operation_name: OPERATION,
  gen_ai_provider_name: PROVIDER,
  gen_ai_request_model: requestModel,
  ...(responseModel ? { gen_ai_response_model: responseModel } : {}),
})

function observeUsage(metrics: ChatMetrics, labels: ReturnType<typeof operationLabels>, usage: CallUsage): void {
  metrics.tokenUsage.observe({ ...labels, gen_ai_token_type: 'input' }, totalInputTokens(usage))
  metrics.tokenUsage.observe({ ...labels, gen_ai_token_type: 'output' }, usage.outputTokens)
}

/**
 * One LLM call through the real SDK, inside llmCall('chat', …): if the calling context still
 * holds a pooled connection, warden_db_connection_held_during_llm_call_total counts it. That
 * is how the release pattern proves itself (the counter stays 0) and how hold shows up.
 * Records the GenAI duration, token usage and, for streams, the chunk timings; the router's
 * fetch counts each HTTP attempt.
 */
export async function callModel(s: ModelCallSettings, req: ModelCallRequest): Promise<ModelCallResult> {
  const deadline = AbortSignal.timeout(s.timeoutMs)
  const signal = AbortSignal.any([req.signal, deadline])
  const params = {
    model: s.model,
    max_tokens: s.maxTokens,
    messages: req.messages,
    ...(s.system ? { system: s.system } : {}),
    ...(s.tools?.length ? { tools: s.tools } : {}),
  }
  const abortType = () => (req.abortReason() ? 'cancelled' : deadline.aborted ? 'timeout' : undefined)
  const started = performance.now()
  const watch = new StreamWatch(s.metrics, s.model, started)
  let streamRequestId: () => string | null = () => null
  try {
    const result = await withAbortReason(abortType, () =>
      llmCall('chat', async () => {
        if (!req.stream) {
          const { data, request_id } = await s.client.messages.create({ ...params, stream: false }, { signal }).withResponse()
          return { message: data, requestId: request_id ?? null }
        }
        const stream = s.client.messages.stream(params, { signal })
        streamRequestId = () => stream.request_id ?? null
        stream.on('streamEvent', watch.onEvent)
        if (req.onConnect) stream.on('connect', req.onConnect)
        if (req.onText) stream.on('text', req.onText)
        const message = await stream.finalMessage()
        return { message, requestId: stream.request_id ?? null }
      }),
    )
    const latencyMs = performance.now() - started
    const usage = usageOf(result.message.usage)
    const labels = operationLabels(s.model, result.message.model)
    s.metrics.operationDuration.observe({ ...labels, error_type: '' }, latencyMs / 1000)
    observeUsage(s.metrics, labels, usage)
    return { ...result, latencyMs, usage }
  } catch (error) {
    const latencyMs = performance.now() - started
    const reason = req.abortReason() ?? (deadline.aborted ? 'timeout' : undefined)
    const failure = classifyLlmError(error, reason, s.timeoutMs)
    const labels = operationLabels(s.model, watch.responseModel)
    s.metrics.operationDuration.observe({ ...labels, error_type: failure.errorType }, latencyMs / 1000)
    const usage = watch.partialUsage()
    if (usage !== NO_USAGE) observeUsage(s.metrics, labels, usage)
    throw new LlmCallFailed(failure, latencyMs, usage, failure.requestId ?? streamRequestId())
  }
}

export const replyText = (message: Message): string =>
  message.content
    .filter((block) => block.type === 'text')
    .map((block) => (block as { text: string }).text)
    .join('')
