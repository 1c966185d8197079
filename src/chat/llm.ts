import Anthropic from '@anthropic-ai/sdk'
import type { Message, MessageParam, Tool } from '@anthropic-ai/sdk/resources/messages'
import { llmCall } from '../pool/instrumented-pool.js'
import { classifyLlmError, type AbortReason, type LlmFailure } from './errors.js'
import type { ChatMetrics } from './metrics.js'

export interface LlmSettings {
  /** the mock (`warden mock-llm`) or a real Anthropic-compatible endpoint; the code path is the same */
  baseURL: string
  apiKey: string
  /** SDK retries of 408/409/429/5xx with backoff; each retry lengthens a failing call. Default 1 */
  maxRetries?: number
  /** the SDK's wait for response headers. Default 60 s */
  timeoutMs?: number
}

export type AnthropicFactory = () => Anthropic

/** The real SDK, configured once; the chat router calls the factory once and reuses the client (and its connections). */
export const anthropicFactory =
  (s: LlmSettings): AnthropicFactory =>
  () =>
    new Anthropic({ baseURL: s.baseURL, apiKey: s.apiKey, maxRetries: s.maxRetries ?? 1, timeout: s.timeoutMs ?? 60_000 })

/** USD per million tokens; the default is a mid-size model's list price, for cost rows that look like real ones. */
export interface Pricing {
  inputPerMTok: number
  outputPerMTok: number
}
export const DEFAULT_PRICING: Pricing = { inputPerMTok: 3, outputPerMTok: 15 }

export const costUsd = (p: Pricing, input: number, output: number) => (input * p.inputPerMTok + output * p.outputPerMTok) / 1_000_000

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
}

/** A failed call, with what its error cost row and the client's answer need. */
export class LlmCallFailed extends Error {
  constructor(
    readonly failure: LlmFailure,
    readonly latencyMs: number,
  ) {
    super(failure.chatError.message)
    this.name = 'LlmCallFailed'
  }
}

const PROVIDER = 'anthropic'

/**
 * One LLM call through the real SDK, inside llmCall('chat', …): if the calling context still
 * holds a pooled connection, warden_db_connection_held_during_llm_call_total counts it. That
 * is how the release pattern proves itself (the counter stays 0) and how hold shows up.
 * Records gen_ai_client_operation_duration_seconds and gen_ai_client_token_usage.
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
  const started = performance.now()
  try {
    const result = await llmCall('chat', async () => {
      if (!req.stream) {
        const { data, request_id } = await s.client.messages.create({ ...params, stream: false }, { signal }).withResponse()
        return { message: data, requestId: request_id ?? null }
      }
      const stream = s.client.messages.stream(params, { signal })
      if (req.onConnect) stream.on('connect', req.onConnect)
      if (req.onText) stream.on('text', req.onText)
      const message = await stream.finalMessage()
      return { message, requestId: stream.request_id ?? null }
    })
    const latencyMs = performance.now() - started
    s.metrics.operationDuration.observe({ gen_ai_request_model: s.model, gen_ai_provider_name: PROVIDER, error_type: '' }, latencyMs / 1000)
    s.metrics.tokenUsage.observe({ gen_ai_request_model: s.model, gen_ai_token_type: 'input' }, result.message.usage.input_tokens)
    s.metrics.tokenUsage.observe({ gen_ai_request_model: s.model, gen_ai_token_type: 'output' }, result.message.usage.output_tokens)
    return { ...result, latencyMs }
  } catch (error) {
    const latencyMs = performance.now() - started
    const reason = req.abortReason() ?? (deadline.aborted ? 'timeout' : undefined)
    const failure = classifyLlmError(error, reason, s.timeoutMs)
    s.metrics.operationDuration.observe(
      { gen_ai_request_model: s.model, gen_ai_provider_name: PROVIDER, error_type: failure.errorType },
      latencyMs / 1000,
    )
    throw new LlmCallFailed(failure, latencyMs)
  }
}

export const replyText = (message: Message): string =>
  message.content
    .filter((block) => block.type === 'text')
    .map((block) => (block as { text: string }).text)
    .join('')
