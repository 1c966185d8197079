/**
 * What one LLM call used, in the provider's own terms, and what it cost. Anthropic's
 * `input_tokens` excludes cached tokens: the prompt is input_tokens + cache_read_input_tokens +
 * cache_creation_input_tokens, each priced differently.
 */

export interface CallUsage {
  /** uncached input tokens, as the provider reports them */
  inputTokens: number
  cacheReadInputTokens: number
  cacheCreationInputTokens: number
  outputTokens: number
}

export const NO_USAGE: CallUsage = Object.freeze({ inputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, outputTokens: 0 })

/** The SDK's usage object (a final Message's, or a stream's message_start snapshot). */
export interface ProviderUsage {
  input_tokens: number
  output_tokens: number
  cache_read_input_tokens?: number | null
  cache_creation_input_tokens?: number | null
}

export const usageOf = (u: ProviderUsage): CallUsage => ({
  inputTokens: u.input_tokens,
  cacheReadInputTokens: u.cache_read_input_tokens ?? 0,
  cacheCreationInputTokens: u.cache_creation_input_tokens ?? 0,
  outputTokens: u.output_tokens,
})

/** The whole prompt: what gen_ai_client_token_usage{gen_ai_token_type="input"} and the session counters count. */
export const totalInputTokens = (u: CallUsage): number => u.inputTokens + u.cacheReadInputTokens + u.cacheCreationInputTokens

export const addUsage = (a: CallUsage, b: CallUsage): CallUsage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  cacheReadInputTokens: a.cacheReadInputTokens + b.cacheReadInputTokens,
  cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
})

/** USD per million tokens; the default is a mid-size model's list price (cache reads 0.1×, cache writes 1.25× input). */
export interface Pricing {
  inputPerMTok: number
  outputPerMTok: number
  cacheReadPerMTok: number
  cacheWritePerMTok: number
}
export const DEFAULT_PRICING: Pricing = Object.freeze({
  inputPerMTok: 3,
  outputPerMTok: 15,
  cacheReadPerMTok: 0.3,
  cacheWritePerMTok: 3.75,
})

export const costUsd = (p: Pricing, u: CallUsage): number =>
  (u.inputTokens * p.inputPerMTok +
    u.cacheReadInputTokens * p.cacheReadPerMTok +
    u.cacheCreationInputTokens * p.cacheWritePerMTok +
    u.outputTokens * p.outputPerMTok) /
  1_000_000

/**
 * Output tokens of a stream that ended before its final usage arrived (the client went away, a
 * mid-stream error): the provider reports output_tokens only at the end, yet bills what it
 * generated. A lower bound from the text received: subword tokenizers never join two
 * whitespace-separated words into one token, so each word is at least one.
 */
export const tokensAtLeast = (text: string): number => text.match(/\S+/g)?.length ?? 0
