import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { ExitCode, usageError, WardenError } from '../core/errors.js'
import { Database } from '../db/database.js'
import { migrate } from '../db/migrate.js'
import type { EmbeddedPostgres } from '../embedded/embedded-postgres.js'
import { untilStopSignal } from '../core/signals.js'
import { parseMs } from '../llm/options.js'
import { renderLoadtest, renderProgress } from '../loadtest/render.js'
import { runLoadtest, type PatternResult } from '../loadtest/run.js'

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i
const PROGRESS_EVERY_MS = 5000

export default class Loadtest extends WardenCommand {
  static override summary =
    'Drive the reference chat path with virtual users against the mock LLM: release before call vs hold, side by side.'

  static override description = `Starts the mock LLM and, for each pattern, the chat path with its own instrumented pool (--pool-max) on an embedded PostgreSQL (or --database-url). Each of --concurrency users creates a session, sends --turns messages one after another and ends it, over and over. After a ramp-up of one LLM call, --duration is measured; turns in flight then finish.

Reports per pattern: throughput (turns/s) and its ratio to the Little's-law limit (concurrency / LLM latency), turn latency p50/p95/p99, errors by kind, pool wait p99 and timeouts, LLM calls made while holding a connection, the most connections seen in pg_stat_activity, and llm_requests rows against successful replies (they must match). With --target-url it drives a chat path that is already running (loopback only unless --allow-remote).

Exit 0 when the run completed; 70 when release (or the target) had no successful turn; 3 when it could not start; 130 on Ctrl-C.`

  static override examples = [
    '<%= config.bin %> loadtest',
    '<%= config.bin %> loadtest --concurrency 200 --pool-max 10 --llm-latency 1s --duration 20s',
    '<%= config.bin %> loadtest --pattern release --stream --json',
    '<%= config.bin %> loadtest --target-url http://127.0.0.1:9478/chat --pattern release --llm-latency 1s',
  ]

  static override flags = {
    pattern: Flags.string({ description: 'which pattern(s) to run', options: ['release', 'hold', 'both'], default: 'both' }),
    concurrency: Flags.integer({ description: 'virtual users', default: 50, min: 1, max: 5000 }),
    'pool-max': Flags.integer({ description: "connections of the chat path's pool", default: 10, min: 1, max: 500 }),
    'pool-timeout': Flags.string({ description: 'wait for a pooled connection before a request fails with pool_timeout', default: '5s' }),
    'llm-latency': Flags.string({ description: 'duration of one LLM call of the mock (streaming included)', default: '1s' }),
    duration: Flags.string({
      description: 'measured time per pattern, after a ramp-up of one LLM call (max 30m)',
      default: '30s',
      exclusive: ['requests'],
    }),
    requests: Flags.integer({ description: 'send this many turns per pattern instead of running for --duration', min: 1, max: 10_000_000 }),
    turns: Flags.integer({ description: 'turns per session before a user ends it and starts another', default: 5, min: 1, max: 1000 }),
    stream: Flags.boolean({ description: 'stream replies (SSE) instead of waiting for whole ones' }),
    'output-tokens': Flags.integer({ description: 'output tokens per mock reply', default: 16, min: 1, max: 10_000 }),
    model: Flags.string({ description: 'model name sent to the mock', default: 'claude-mock-1' }),
    'target-url': Flags.string({ description: 'drive this running chat path (its /chat base URL) instead of starting one' }),
    'allow-remote': Flags.boolean({ description: 'allow a --target-url that is not on this machine' }),
  }

  async run(): Promise<PatternResult[]> {
    const { flags } = await this.parse(Loadtest)
    const llmLatencyMs = parseMs('llm-latency', flags['llm-latency'], true)
    const durationMs = flags.requests === undefined ? parseMs('duration', flags.duration) : undefined
    if (durationMs !== undefined && durationMs > 30 * 60_000) throw usageError(`--duration ${flags.duration}: at most 30m`)
    const patterns = flags.pattern === 'both' ? (['release', 'hold'] as const) : ([flags.pattern] as Array<'release' | 'hold'>)
    const target = flags['target-url'] === undefined ? undefined : checkTarget(flags['target-url'], flags['allow-remote'])
    if (target && flags.pattern === 'both')
      throw usageError('--target-url drives one running chat path: give the --pattern it runs (release or hold), not both')
    const loaded = flags['database-url'] !== undefined || flags.config !== undefined || target ? this.loadConfig(flags) : undefined

    const stop = untilStopSignal()
    const abort = new AbortController()
    void stop.signal.then(() => abort.abort())
    const progress = progressWriter()
    let embedded: EmbeddedPostgres | undefined
    try {
      let databaseUrl = loaded?.config.database.url
      if (!target && !databaseUrl) {
        const { startEmbeddedPostgres } = await import('../embedded/embedded-postgres.js')
        process.stderr.write('starting embedded PostgreSQL...\n')
        embedded = await startEmbeddedPostgres().catch((error: unknown) => {
          if (error instanceof WardenError) throw error
          throw new WardenError(`could not start the embedded PostgreSQL: ${(error as Error).message.split('\n')[0]}`, ExitCode.unavailable)
        })
        databaseUrl = embedded.url
      }
      if (databaseUrl && !target) await migrateChatSchema(databaseUrl, loaded?.config.wardenSchema ?? 'warden')
      const results = await runLoadtest({
        patterns: [...patterns],
        concurrency: flags.concurrency,
        turns: flags.turns,
        durationMs,
        requests: flags.requests,
        llmLatencyMs,
        stream: flags.stream,
        poolMax: flags['pool-max'],
        poolTimeoutMs: parseMs('pool-timeout', flags['pool-timeout']),
        databaseUrl,
        schema: loaded?.config.wardenSchema ?? 'warden',
        targetUrl: target,
        model: flags.model,
        outputTokens: flags['output-tokens'],
        signal: abort.signal,
        onProgress: progress,
      }).catch((error: unknown) => {
        throw error instanceof WardenError
          ? error
          : new WardenError(`the load test could not run: ${(error as Error).message}`, ExitCode.unavailable)
      })
      progress.done()
      this.say(renderLoadtest(results))
      if (abort.signal.aborted) process.exitCode = 130
      else if (results.some((r) => (r.pattern === 'release' || target) && r.successes === 0)) {
        process.stderr.write('warden loadtest: no turn succeeded; the run failed (see the errors above)\n')
        process.exitCode = ExitCode.failed
      }
      return results
    } finally {
      stop.dispose()
      await embedded?.stop()
    }
  }
}

function checkTarget(url: string, allowRemote: boolean): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw usageError(`--target-url ${JSON.stringify(url)}: expected an http:// URL such as http://127.0.0.1:9478/chat`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw usageError(`--target-url ${JSON.stringify(url)}: expected http:// or https://`)
  if (!LOOPBACK.test(parsed.hostname) && !allowRemote) {
    throw usageError(
      `--target-url ${parsed.hostname} is not on this machine; a load test sends hundreds of requests a second`,
      'pass --allow-remote if you own that server and mean it',
    )
  }
  return url
}

async function migrateChatSchema(url: string, schema: string): Promise<void> {
  const db = new Database({ url, applicationName: 'warden-loadtest', connectTimeout: 10, statementTimeout: 60, poolMax: 1 })
  try {
    await db.ping()
    await migrate(db, schema)
  } finally {
    await db.close().catch(() => undefined)
  }
}

/** A live line on a terminal; elsewhere the first tick and then one line every few seconds, so CI logs show the run is alive. */
function progressWriter(): ((pattern: string, s: Parameters<typeof renderProgress>[1]) => void) & { done: () => void } {
  const tty = process.stderr.isTTY === true
  let lastLine = 0
  let lastPattern = ''
  let drawn = false
  const write = (pattern: string, s: Parameters<typeof renderProgress>[1]) => {
    const text = renderProgress(pattern, s)
    if (tty) {
      process.stderr.write(`\r\u001b[2K${text}`)
      drawn = true
    } else if (pattern !== lastPattern || s.elapsedMs - lastLine >= PROGRESS_EVERY_MS) {
      process.stderr.write(`${text}\n`)
      lastLine = s.elapsedMs
      lastPattern = pattern
    }
  }
  return Object.assign(write, {
    done: () => {
      if (drawn) process.stderr.write('\r\u001b[2K')
    },
  })
}
