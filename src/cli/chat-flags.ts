import { Flags } from '@oclif/core'
import type { ChatMountOptions } from '../chat/mount.js'
import type { ChatLogger } from '../chat/router.js'
import { usageError } from '../core/errors.js'
import { httpUrlProblem } from '../core/urls.js'
import { startMockLlm, type MockLlmServer } from '../llm/mock-server.js'
import { parseMs } from '../llm/options.js'

/** The chat path's flags, the same in `warden chat serve` and `warden serve --chat`. */
export const chatFlags = {
  pattern: Flags.string({
    description: 'chat path: release (the rule) or hold (a transaction across the LLM call, for comparison)',
    options: ['release', 'hold'],
    default: 'release',
  }),
  'llm-url': Flags.string({ description: 'chat path: Anthropic-compatible endpoint (default: an in-process mock LLM)' }),
  'api-key': Flags.string({ description: 'API key for --llm-url (default: env ANTHROPIC_API_KEY)' }),
  model: Flags.string({ description: 'chat path: model name sent with every call', default: 'claude-mock-1' }),
  'mock-latency': Flags.string({ description: 'latency of the in-process mock, e.g. 1s', default: '1s' }),
  'pool-max': Flags.integer({ description: 'connections of the chat pool', default: 10, min: 1, max: 1000 }),
  'pool-timeout': Flags.string({ description: 'chat path: wait for a pooled connection before answering 503 pool_timeout', default: '5s' }),
  'llm-timeout': Flags.string({ description: 'chat path: deadline of one LLM call, streaming included (504 after it)', default: '60s' }),
  'max-retries': Flags.integer({ description: 'chat path: SDK retries of 429/5xx per call', default: 1, min: 0, max: 10 }),
  grace: Flags.string({ description: 'on shutdown, how long chat turns in flight may finish before they are cancelled', default: '5s' }),
  'keep-sessions': Flags.boolean({
    description: "on shutdown leave this server's chat sessions open (a rolling restart; another instance continues them)",
  }),
}

export interface ChatFlagValues {
  pattern: string
  'llm-url'?: string
  'api-key'?: string
  model: string
  'mock-latency': string
  'pool-max': number
  'pool-timeout': string
  'llm-timeout': string
  'max-retries': number
  grace: string
  'keep-sessions': boolean
}

export interface ChatSetup {
  options: ChatMountOptions & { keepSessions: boolean; graceMs: number }
  /** the in-process mock LLM when no --llm-url was given; the caller closes it */
  mock?: MockLlmServer
  /** what answers the LLM calls, for banners */
  llmLabel: string
}

/** Validates the chat flags, then starts the mock LLM when no endpoint is given. */
export async function chatSetup(
  flags: ChatFlagValues,
  base: { schema: string; applicationName: string; logger?: ChatLogger },
): Promise<ChatSetup> {
  const apiKey = flags['api-key'] ?? process.env.ANTHROPIC_API_KEY
  const llmUrlProblem = flags['llm-url'] === undefined ? undefined : httpUrlProblem(flags['llm-url'])
  if (llmUrlProblem) throw usageError(`--llm-url ${JSON.stringify(flags['llm-url'])}: ${llmUrlProblem}`)
  if (flags['llm-url'] && !apiKey) throw usageError('--llm-url needs an API key: --api-key or ANTHROPIC_API_KEY')
  const graceMs = parseMs('grace', flags.grace, true)
  const llmTimeoutMs = parseMs('llm-timeout', flags['llm-timeout'])
  const poolTimeoutMs = parseMs('pool-timeout', flags['pool-timeout'])
  const mockLatencyMs = parseMs('mock-latency', flags['mock-latency'], true)
  const mock = flags['llm-url'] ? undefined : await startMockLlm({ latencyMs: mockLatencyMs })
  return {
    mock,
    llmLabel: flags['llm-url'] ?? `mock ${mock!.url}`,
    options: {
      schema: base.schema,
      llm: {
        baseURL: flags['llm-url'] ?? mock!.url,
        apiKey: apiKey ?? 'mock-key',
        maxRetries: flags['max-retries'],
        timeoutMs: llmTimeoutMs,
      },
      llmTimeoutMs,
      model: flags.model,
      pattern: flags.pattern as 'release' | 'hold',
      poolMax: flags['pool-max'],
      poolTimeoutMs,
      applicationName: `${base.applicationName}-chat`,
      logger: base.logger,
      keepSessions: flags['keep-sessions'],
      graceMs,
    },
  }
}
