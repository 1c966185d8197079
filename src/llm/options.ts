import { Flags } from '@oclif/core'
import { DURATION_EXPECTED, parseDuration } from '../core/duration.js'
import { usageError } from '../core/errors.js'
import type { MockLlmOptions } from './mock-server.js'

/**
 * Flag parsing shared by `warden mock-llm`, `warden chat serve` and `warden loadtest`: the
 * same flag means the same thing, and is refused with the same message, in all three.
 */

/** "1s", "250ms", "1m"; "0" too where zero makes sense (no latency). */
export function parseMs(flag: string, value: string, allowZero = false): number {
  if (allowZero && /^0+(\.0+)?(ms|s)?$/.test(value.trim())) return 0
  const seconds = parseDuration(value)
  if (seconds === undefined)
    throw usageError(
      `--${flag} ${JSON.stringify(value)}: expected ${allowZero ? `0 or ${DURATION_EXPECTED.replace(/^a positive/, 'a')}` : DURATION_EXPECTED}`,
    )
  return Math.round(seconds * 1000)
}

export function parseRate(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !(n >= 0 && n <= 1))
    throw usageError(`--${flag} ${JSON.stringify(value)}: expected a probability from 0 to 1, e.g. 0.05`)
  return n
}

export function parsePositive(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !(n > 0) || !Number.isFinite(n))
    throw usageError(`--${flag} ${JSON.stringify(value)}: expected a positive number`)
  return n
}

const rateFlag = (what: string) => Flags.string({ description: `probability (0-1) that a request gets ${what}`, helpGroup: 'FAULTS' })

/** The mock's behaviour flags (not where it listens: commands that embed a mock choose that). */
export const mockLlmFlags = {
  latency: Flags.string({
    description: 'fixed latency per call, e.g. 1s, 250ms, 0 (streaming: time to first token unless --ttft)',
    exclusive: ['latency-median', 'latency-p99'],
  }),
  'latency-median': Flags.string({ description: 'lognormal latency: median, e.g. 800ms (with --latency-p99)', dependsOn: ['latency-p99'] }),
  'latency-p99': Flags.string({
    description: 'lognormal latency: 99th percentile, e.g. 10s (with --latency-median)',
    dependsOn: ['latency-median'],
  }),
  ttft: Flags.string({ description: 'streaming: time to first token, e.g. 300ms (default: the latency)' }),
  'tokens-per-second': Flags.string({ description: 'streaming pace of output tokens (default 200)' }),
  'output-tokens': Flags.integer({ description: 'output tokens per reply (default 32)', min: 1, max: 100_000 }),
  'rate-429': rateFlag('a 429 rate limit (with retry-after)'),
  'rate-529': rateFlag('a 529 overloaded'),
  'rate-500': rateFlag('a 500 api_error'),
  'rate-hang': rateFlag('no answer until --hang passes (client timeouts)'),
  'rate-midstream': rateFlag('an error event half-way through a stream'),
  hang: Flags.string({ description: 'how long a hung request hangs (default 120s)', helpGroup: 'FAULTS' }),
  'retry-after': Flags.string({ description: 'retry-after sent with 429s (default 1s)', helpGroup: 'FAULTS' }),
  'api-key': Flags.string({ description: 'require this API key (x-api-key or Bearer); a wrong one gets 401' }),
  'cache-read-tokens': Flags.integer({
    description: 'prompt caching: cache_read_input_tokens every reply reports (input_tokens stays the uncached rest)',
    min: 0,
    max: 10_000_000,
  }),
  'cache-creation-tokens': Flags.integer({
    description: 'prompt caching: cache_creation_input_tokens every reply reports',
    min: 0,
    max: 10_000_000,
  }),
  seed: Flags.integer({
    description: 'random seed for latencies and faults: the same seed replays the same run',
    min: 0,
    max: 2 ** 31 - 1,
  }),
}

export interface MockLlmFlagValues {
  latency?: string
  'latency-median'?: string
  'latency-p99'?: string
  ttft?: string
  'tokens-per-second'?: string
  'output-tokens'?: number
  'rate-429'?: string
  'rate-529'?: string
  'rate-500'?: string
  'rate-hang'?: string
  'rate-midstream'?: string
  hang?: string
  'retry-after'?: string
  'api-key'?: string
  'cache-read-tokens'?: number
  'cache-creation-tokens'?: number
  seed?: number
}

export function mockLlmOptions(flags: MockLlmFlagValues): MockLlmOptions {
  const median = flags['latency-median'] === undefined ? undefined : parseMs('latency-median', flags['latency-median'])
  const p99 = flags['latency-p99'] === undefined ? undefined : parseMs('latency-p99', flags['latency-p99'])
  if (median !== undefined && p99 !== undefined && p99 < median)
    throw usageError(`--latency-p99 (${p99} ms) must be at least --latency-median (${median} ms)`)
  const faults = {
    rate429: parseRate('rate-429', flags['rate-429']),
    rate529: parseRate('rate-529', flags['rate-529']),
    rate500: parseRate('rate-500', flags['rate-500']),
    rateHang: parseRate('rate-hang', flags['rate-hang']),
    rateMidStreamError: parseRate('rate-midstream', flags['rate-midstream']),
  }
  const total = (faults.rate429 ?? 0) + (faults.rate529 ?? 0) + (faults.rate500 ?? 0) + (faults.rateHang ?? 0)
  if (total > 1) throw usageError(`--rate-429 + --rate-529 + --rate-500 + --rate-hang add up to ${total}; at most 1`)
  return {
    latencyMs:
      median !== undefined && p99 !== undefined
        ? { median, p99 }
        : flags.latency === undefined
          ? undefined
          : parseMs('latency', flags.latency, true),
    ttftMs: flags.ttft === undefined ? undefined : parseMs('ttft', flags.ttft, true),
    tokensPerSecond: parsePositive('tokens-per-second', flags['tokens-per-second']),
    outputTokens: flags['output-tokens'],
    faults,
    hangMs: flags.hang === undefined ? undefined : parseMs('hang', flags.hang),
    retryAfterMs: flags['retry-after'] === undefined ? undefined : parseMs('retry-after', flags['retry-after']),
    apiKey: flags['api-key'],
    cache:
      flags['cache-read-tokens'] === undefined && flags['cache-creation-tokens'] === undefined
        ? undefined
        : { readTokens: flags['cache-read-tokens'] ?? 0, creationTokens: flags['cache-creation-tokens'] ?? 0 },
    seed: flags.seed,
  }
}

/** One line for people: what the mock will do. */
export function describeMockOptions(o: MockLlmOptions): string {
  const latency =
    o.latencyMs === undefined
      ? 'no latency'
      : typeof o.latencyMs === 'number'
        ? `latency ${o.latencyMs} ms`
        : `latency median ${o.latencyMs.median} ms, p99 ${o.latencyMs.p99} ms`
  const faults = Object.entries(o.faults ?? {})
    .filter(([, rate]) => rate)
    .map(([name, rate]) => `${name.replace(/^rate/, '').replace(/MidStreamError/, 'midstream')} ${rate}`)
  return [
    latency,
    o.ttftMs !== undefined ? `ttft ${o.ttftMs} ms` : '',
    faults.length ? `faults: ${faults.join(', ')}` : 'no faults',
    o.apiKey ? 'API key required' : '',
    o.cache ? `cache read ${o.cache.readTokens ?? 0} / creation ${o.cache.creationTokens ?? 0} tokens` : '',
  ]
    .filter(Boolean)
    .join('; ')
}
