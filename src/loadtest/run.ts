import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { Registry } from 'prom-client'
import { startChatServer, type ChatServer } from '../chat/server.js'
import type { ChatPattern } from '../chat/turn.js'
import { backendPids, connectionsOfApplication, countLlmRequestsByPrefix } from '../db/queries/chat.js'
import type { MockLlmOptions } from '../llm/mock-server.js'
import { POOL_METRIC_NAMES, POOL_NAME_LABEL } from '../pool/instrumented-pool.js'
import type { DriveSnapshot } from './drive.js'
import { processesCpuMs, threadCpuMs } from './cpu.js'
import { counterValue, histogramQuantile } from './stats.js'
import { driveInThread, startMockThread, type MockThread } from './threads.js'

export interface LoadtestOptions {
  patterns: ChatPattern[]
  concurrency: number
  turns: number
  durationMs?: number
  requests?: number
  /** the whole LLM call, streaming included (the mock is set up so); Little's law uses it */
  llmLatencyMs: number
  stream: boolean
  poolMax: number
  poolTimeoutMs: number
  /** PostgreSQL for the chat path (local mode), for cost-row counts and pg_stat_activity */
  databaseUrl?: string
  schema: string
  /** drive an already running chat path (its /chat base URL) instead of starting one */
  targetUrl?: string
  model: string
  outputTokens: number
  signal?: AbortSignal
  onProgress?: (pattern: string, snapshot: DriveSnapshot) => void
}

/** One pattern's figures: SPEC.md's `loadtest --json` object, plus the detail that explains them. */
export interface PatternResult {
  pattern: string
  concurrency: number
  llmLatencyMs: number
  throughput: number
  latencyMs: { p50: number | null; p95: number | null; p99: number | null }
  errors: Record<string, number>
  poolWaitP99Ms: number | null
  /** throughput / (concurrency / llm latency): 1 is the Little's-law ceiling of a closed loop */
  littleLawRatio: number
  /** llm_requests rows with status ok of this run's sessions; must equal successes */
  llmRequestsRows: number | null
  successes: number
  /** most connections of the chat pool's application_name seen in pg_stat_activity (polled every 100 ms) */
  maxServerConnections: number | null
  llmErrorRows: number | null
  heldDuringLlmCalls: number | null
  poolTimeouts: number | null
  /** busy share of the chat server's event loop during the run: near 1 means its thread, not the pool, was the limit */
  serverEventLoopUtilization: number | null
  /**
   * CPU per successful turn (Linux, local mode): the chat server's thread, the PostgreSQL
   * backends of its pool, the load generator's and the mock's threads. Their sum against the
   * machine's cores says whether the box, rather than the pattern, set the limit.
   */
  cpuMsPerTurn: { chatServer: number | null; postgres: number | null; loadGenerator: number | null; mockLlm: number | null }
  poolMax: number
  stream: boolean
  turnsInWindow: number
  windowMs: number
  sessions: number
  interrupted: boolean
}

const POLL_MS = 100

/** The mock's settings for a whole call of `latencyMs`: a stream spends the last ≤100 ms sending tokens. */
export function mockSettings(latencyMs: number, stream: boolean, outputTokens: number): MockLlmOptions {
  const streamMs = stream ? Math.min(100, Math.floor(latencyMs / 2)) : 0
  return {
    latencyMs,
    ttftMs: latencyMs - streamMs,
    outputTokens,
    tokensPerSecond: streamMs > 0 ? (outputTokens * 1000) / streamMs : 1_000_000,
    toolUse: false,
  }
}

/** Polls pg_stat_activity for one application_name and keeps the maximum. */
function connectionPoller(monitor: pg.Client, applicationName: string): { stop: () => Promise<number> } {
  let max = 0
  let busy: Promise<unknown> = Promise.resolve()
  const statement = connectionsOfApplication(applicationName)
  const timer = setInterval(() => {
    busy = monitor.query<{ n: number }>({ text: statement.text, values: statement.values }).then(
      (r) => (max = Math.max(max, r.rows[0]?.n ?? 0)),
      () => undefined,
    )
  }, POLL_MS)
  return {
    async stop() {
      clearInterval(timer)
      await busy
      return max
    },
  }
}

/**
 * Opens every pool connection before the run: connection set-up (fork, SCRAM) under load would
 * otherwise land in the first turns' pool wait. The wait histogram is then reset so it shows
 * the run only; the registry is this pattern's own.
 */
async function warmPool(server: ChatServer, registry: Registry, poolMax: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: poolMax }, () => server.pool.connect()))
  for (const client of clients) client.release()
  registry.getSingleMetric(POOL_METRIC_NAMES.waitTime)?.reset()
}

/** CPU of the pool's backends, read from /proc: only when PostgreSQL runs on this machine (embedded). */
async function backendsCpuMs(monitor: pg.Client, applicationName: string): Promise<number | null> {
  const statement = backendPids(applicationName)
  const { rows } = await monitor.query<{ pid: number }>({ text: statement.text, values: statement.values })
  return processesCpuMs(
    rows.map((r) => r.pid),
    'postgres',
  )
}

async function countRows(monitor: pg.Client, schema: string, prefix: string): Promise<{ ok: number; error: number }> {
  const statement = countLlmRequestsByPrefix(schema, prefix)
  const { rows } = await monitor.query<{ ok: number; error: number }>({ text: statement.text, values: statement.values })
  return rows[0] ?? { ok: 0, error: 0 }
}

async function runPattern(
  o: LoadtestOptions,
  pattern: ChatPattern,
  runId: string,
  mock: MockThread | undefined,
  monitor: pg.Client | undefined,
): Promise<PatternResult> {
  const idPrefix = `lt-${runId}-${pattern}-`
  const applicationName = `warden-loadtest-${runId}-${pattern}`
  const poolName = `loadtest_${pattern}`
  const registry = new Registry()
  const llmTimeoutMs = Math.max(10_000, o.llmLatencyMs * 5)
  let server: ChatServer | undefined
  if (mock) {
    server = await startChatServer({
      databaseUrl: o.databaseUrl!,
      schema: o.schema,
      llm: { baseURL: mock.url, apiKey: 'loadtest', maxRetries: 0, timeoutMs: llmTimeoutMs },
      llmTimeoutMs,
      model: o.model,
      pattern,
      poolMax: o.poolMax,
      poolTimeoutMs: o.poolTimeoutMs,
      applicationName,
      poolName,
      registry,
      // the default console logger would print one held-connection warning per call site in hold mode
      logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
    })
  }
  if (server) await warmPool(server, registry, o.poolMax)
  const poller = monitor && server ? connectionPoller(monitor, applicationName) : undefined
  try {
    const elu = performance.eventLoopUtilization()
    const cpuBefore = {
      server: threadCpuMs(),
      mock: (await mock?.cpuMs()) ?? null,
      postgres: monitor && server ? await backendsCpuMs(monitor, applicationName) : null,
    }
    const driven = await driveInThread(
      {
        chatUrl: server?.chatUrl ?? o.targetUrl!,
        concurrency: o.concurrency,
        turns: o.turns,
        stream: o.stream,
        idPrefix,
        durationMs: o.durationMs,
        requests: o.requests,
        rampUpMs: o.requests === undefined ? Math.min(o.llmLatencyMs, 5000) : 0,
        drainMs: llmTimeoutMs + o.poolTimeoutMs * 2 + 5000,
        requestTimeoutMs: llmTimeoutMs + o.poolTimeoutMs * 2 + 5000,
      },
      o.signal,
      o.onProgress ? (snapshot) => o.onProgress!(pattern, snapshot) : undefined,
    )
    const serverElu = server ? performance.eventLoopUtilization(elu).utilization : null
    const perTurn = (before: number | null, after: number | null) =>
      server && before !== null && after !== null && driven.successes > 0
        ? Math.round(((after - before) / driven.successes) * 100) / 100
        : null
    const cpuMsPerTurn = {
      chatServer: perTurn(cpuBefore.server, threadCpuMs()),
      postgres: perTurn(cpuBefore.postgres, monitor && server ? await backendsCpuMs(monitor, applicationName) : null),
      loadGenerator: perTurn(0, driven.cpuMs),
      mockLlm: perTurn(cpuBefore.mock, (await mock?.cpuMs()) ?? null),
    }
    const maxServerConnections = poller ? await poller.stop() : null
    const pool = { [POOL_NAME_LABEL]: poolName }
    const waitP99 = server ? await histogramQuantile(registry, POOL_METRIC_NAMES.waitTime, pool, 0.99) : null
    const held = server ? await counterValue(registry, POOL_METRIC_NAMES.heldDuringLlmCall, pool) : null
    const timeouts = server ? await counterValue(registry, POOL_METRIC_NAMES.timeouts, pool) : null
    await server?.close({ graceMs: 0 })
    server = undefined
    const rows = monitor ? await countRows(monitor, o.schema, idPrefix) : undefined
    const limit = o.concurrency / (o.llmLatencyMs / 1000)
    return {
      pattern,
      concurrency: o.concurrency,
      llmLatencyMs: o.llmLatencyMs,
      throughput: Math.round(driven.throughput * 10) / 10,
      latencyMs: driven.latencyMs,
      errors: driven.errors,
      poolWaitP99Ms: waitP99 === null ? null : Math.round(waitP99 * 10_000) / 10,
      littleLawRatio: Number.isFinite(limit) && limit > 0 ? Math.round((driven.throughput / limit) * 1000) / 1000 : 0,
      llmRequestsRows: rows?.ok ?? null,
      successes: driven.successes,
      maxServerConnections,
      llmErrorRows: rows?.error ?? null,
      heldDuringLlmCalls: held,
      poolTimeouts: timeouts,
      serverEventLoopUtilization: serverElu === null ? null : Math.round(serverElu * 1000) / 1000,
      cpuMsPerTurn,
      poolMax: o.poolMax,
      stream: o.stream,
      turnsInWindow: driven.turnsInWindow,
      windowMs: driven.windowMs,
      sessions: driven.sessions,
      interrupted: driven.interrupted,
    }
  } finally {
    await poller?.stop()
    await server?.close({ graceMs: 0 }).catch(() => undefined)
  }
}

/**
 * Runs each pattern in turn with the same settings against the same mock LLM and database, so
 * their figures sit side by side. Local mode starts the mock and, per pattern, a chat server
 * with its own instrumented pool (pool max, pool timeout); target mode drives a chat path
 * someone else runs.
 */
export async function runLoadtest(o: LoadtestOptions): Promise<PatternResult[]> {
  const runId = randomBytes(3).toString('hex')
  const mock = o.targetUrl ? undefined : await startMockThread(mockSettings(o.llmLatencyMs, o.stream, o.outputTokens))
  let monitor: pg.Client | undefined
  try {
    if (o.databaseUrl) {
      monitor = new pg.Client({ connectionString: o.databaseUrl, application_name: `warden-loadtest-${runId}-monitor` })
      // A terminal's Ctrl-C also stops an embedded server; its goodbye must not crash the report.
      monitor.on('error', () => undefined)
      await monitor.connect()
    }
    const results: PatternResult[] = []
    for (const pattern of o.patterns) {
      if (o.signal?.aborted) break
      results.push(await runPattern(o, pattern, runId, mock, monitor))
    }
    return results
  } finally {
    await monitor?.end().catch(() => undefined)
    await mock?.close()
  }
}
