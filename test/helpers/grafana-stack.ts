import { Writable } from 'node:stream'
import Anthropic from '@anthropic-ai/sdk'
import { startChatServer, type ChatServer } from '../../src/chat/server.js'
import { loadConfig } from '../../src/core/config.js'
import { Database } from '../../src/db/database.js'
import { migrate } from '../../src/db/migrate.js'
import { startMockLlm, type MockLlmServer } from '../../src/llm/mock-server.js'
import { createRegistry } from '../../src/metrics/registry.js'
import { createInstrumentedPool, llmCall, poolScope, type PoolLogger } from '../../src/pool/instrumented-pool.js'
import { createLogger } from '../../src/server/logger.js'
import { startService, type Service } from '../../src/server/service.js'
import { writeConfig } from './cli.js'
import type { TestDatabase } from './db.js'
import { exampleSchema, GROUPS, seedConversationSessions } from './fixtures.js'
import { regexLiteral } from './grafana-files.js'
import { startPrometheus, type RunningPrometheus } from './prometheus.js'
import { ADMIN_TOKEN } from './server.js'
import { sleep } from './wait.js'

/*
 * The live stack the dashboards are checked and previewed against (test/grafana-live.test.ts,
 * scripts/render-dashboards.ts png): Warden, the chat path, LLM traffic and a real Prometheus.
 */

export interface LiveStackOptions {
  /** one chat server per model, all publishing into the service's registry (default two) */
  models?: string[]
  /** concurrent chat clients per chat server (default 2) */
  workersPerChat?: number
  /** the scheduled sweep (6-field cron, default every 2 s); slower lets orphans pile up between sweeps */
  sweepSchedule?: string
}

export interface TrafficStats {
  turns: number
  /** chat turns answered with an error, by HTTP status */
  errors: Record<string, number>
  /** streams the client dropped mid-way (closed by the chat path as 'disconnect') */
  disconnects: number
  /** LLM calls the leaky app made while holding a connection */
  heldCalls: number
  /** connect() calls of the leaky app that timed out */
  poolTimeouts: number
  /** orphans inserted while running */
  orphansAdded: number
  /** unexpected failures of the traffic loops (network, bugs), with the last message */
  failures: number
  lastFailure?: string
}

/**
 * The fleet the stack runs: target chat (the test database: conversation_sessions, the chat path
 * and the leaky app) and target jobs (a second database on the same server, an llm_sessions
 * table), so every panel is checked with two targets and two tables side by side.
 */
export const LIVE_TARGETS = { chat: 'conversations', jobs: 'agent-sessions' } as const

export interface LiveStack {
  service: Service
  prometheus: RunningPrometheus
  mock: MockLlmServer
  chats: ChatServer[]
  /** the job and instance labels Prometheus gives the service's series */
  job: string
  instance: string
  traffic: TrafficStats
  /** the service's warnings and errors, parsed */
  logs: Array<Record<string, unknown>>
  stop: () => Promise<void>
}

/** The application_name of the app that holds a transaction across its LLM calls. */
export const LEAKY_APP = 'leaky-app'

async function postJson(url: string, body: unknown): Promise<{ status: number; body: { session?: { id: string } } }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: response.status, body: (await response.json().catch(() => ({}))) as { session?: { id: string } } }
}

/** A streamed turn read to its end; a stream that ends with an error event counts as a 502 like the JSON route's. */
async function streamTurn(url: string, message: string): Promise<{ status: number }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message }) })
  const text = await response.text()
  if (response.status !== 200) return { status: response.status }
  return { status: /^event: done$/m.test(text) ? 200 : 502 }
}

/** One chat client: sessions of a few turns, some streamed, some with parallel tool calls, some streams dropped mid-way. */
async function chatClient(chatUrl: string, worker: number, running: () => boolean, traffic: TrafficStats): Promise<void> {
  let session: string | undefined
  let turnsInSession = 0
  while (running()) {
    try {
      if (session === undefined) {
        const created = await postJson(`${chatUrl}/sessions`, { agentRole: GROUPS[worker % GROUPS.length] })
        session = created.body.session?.id
        turnsInSession = 0
        if (session === undefined) throw new Error(`POST /sessions answered ${created.status}`)
      }
      const turn = traffic.turns++
      const path = `${chatUrl}/sessions/${encodeURIComponent(session)}/messages`
      if (turn % 11 === 5) {
        // A client that goes away mid-stream: the chat path closes the session (reason disconnect).
        const controller = new AbortController()
        const response = await fetch(`${path}/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message: 'tell me a long story' }),
          signal: controller.signal,
        })
        if (response.headers.get('content-type')?.startsWith('text/event-stream')) {
          controller.abort()
          traffic.disconnects += 1
          session = undefined
        } else {
          await response.body?.cancel()
        }
        continue
      }
      const message = turn % 5 === 0 ? '[tools:2] look up the order and the invoice' : 'hello, how is my order doing?'
      // Some turns stream to the end: the chunk timings (time to first chunk, per chunk) need whole streams.
      const reply = turn % 3 === 1 ? await streamTurn(`${path}/stream`, message) : await postJson(path, { message })
      if (reply.status !== 200) {
        traffic.errors[reply.status] = (traffic.errors[reply.status] ?? 0) + 1
        if (reply.status === 404 || reply.status === 409) session = undefined
      } else if (++turnsInSession >= 4) {
        await postJson(`${chatUrl}/sessions/${encodeURIComponent(session)}/end`, {})
        session = undefined
      }
    } catch (error) {
      if (!running()) return
      traffic.failures += 1
      traffic.lastFailure = (error as Error).message
      session = undefined
      await sleep(100)
    }
  }
}

const quietPoolLogger: PoolLogger = { warn: () => undefined }

/**
 * The anti-pattern the dashboards exist to show: an app with a one-connection pool that opens a
 * transaction and keeps it open while it calls the LLM (llmCall counts each call), and whose
 * other requests then time out waiting for that connection. pg_stat_activity shows it
 * "idle in transaction" for as long as it runs.
 */
async function leakyApp(
  databaseUrl: string,
  mockUrl: string,
  registry: ReturnType<typeof createRegistry>,
  running: () => boolean,
  traffic: TrafficStats,
  started: (ok: boolean) => void,
): Promise<void> {
  const pool = createInstrumentedPool(
    { connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 300, application_name: LEAKY_APP },
    { poolName: 'leaky', registry, logger: quietPoolLogger },
  )
  pool.on('error', () => undefined)
  const anthropic = new Anthropic({ baseURL: mockUrl, apiKey: 'test-key', maxRetries: 0 })
  try {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT 1')
      started(true)
      while (running()) {
        await llmCall('summarise', () =>
          anthropic.messages.create({
            model: 'claude-mock-leaky',
            max_tokens: 16,
            messages: [{ role: 'user', content: 'summarise the session' }],
          }),
        ).catch(() => undefined)
        traffic.heldCalls += 1
        try {
          ;(await pool.connect()).release()
        } catch {
          traffic.poolTimeouts += 1
        }
        await sleep(400)
      }
      await client.query('ROLLBACK').catch(() => undefined)
    } finally {
      client.release()
    }
  } catch (error) {
    traffic.failures += 1
    traffic.lastFailure = `leaky app: ${(error as Error).message}`
    started(false)
  } finally {
    await pool.end().catch(() => undefined)
  }
}

/** A second database on the server of `t`, dropped (from `t`'s database) when the stack stops. */
async function createSiblingDatabase(t: TestDatabase, suffix: string): Promise<TestDatabase> {
  const name = `${t.name}_${suffix}`.slice(0, 63)
  await t.exec(`CREATE DATABASE "${name}"`)
  const url = new URL(t.url)
  url.pathname = `/${name}`
  const db = new Database({ url: url.toString(), applicationName: 'warden-test', connectTimeout: 5, statementTimeout: 30, poolMax: 2 })
  return {
    url: url.toString(),
    name,
    db,
    exec: (text, values) => db.pool.query(text, values),
    async drop() {
      await db.close().catch(() => undefined)
      await t.exec(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    },
  }
}

/**
 * Everything the dashboards read, for real: two targets (LIVE_TARGETS), a seeded session table
 * with orphans in each, `warden serve`
 * (startService) with the scheduler sweeping and applying every 2 s and doctor every 2 s, chat
 * servers (the reference chat path, through @anthropic-ai/sdk) sharing the service's registry
 * against the mock LLM with faults, a leaky app holding a transaction across LLM calls, new
 * orphans arriving, and a real Prometheus scraping the service every second.
 */
export async function startLiveStack(t: TestDatabase, options: LiveStackOptions = {}): Promise<LiveStack> {
  const traffic: TrafficStats = { turns: 0, errors: {}, disconnects: 0, heldCalls: 0, poolTimeouts: 0, orphansAdded: 0, failures: 0 }
  const logs: Array<Record<string, unknown>> = []
  const stops: Array<() => Promise<unknown>> = []
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined)
  }
  let running = true
  const isRunning = () => running
  try {
    await seedConversationSessions(t, { orphans: 30, live: 24, closed: 12 })
    await migrate(t.db, 'warden')
    const jobs = await createSiblingDatabase(t, 'jobs')
    stops.push(() => jobs.drop())
    await jobs.exec(exampleSchema('llm_sessions'))
    await jobs.exec(
      `INSERT INTO llm_sessions (role, created_at, last_query_at)
       SELECT ($1::text[])[1 + i % 2], now() - interval '3 hours', now() - CASE WHEN i % 3 = 0 THEN interval '2 hours' ELSE interval '1 minute' END
         FROM generate_series(1, 18) AS i`,
      [['planner', 'worker']],
    )
    await migrate(jobs.db, 'warden')

    // Fault rates high enough that every error panel has data within seconds, low enough that most turns succeed.
    const mock = await startMockLlm({
      latencyMs: { median: 150, p99: 900 },
      faults: { rate429: 0.06, rate500: 0.05, rate529: 0.04 },
      seed: 11,
    })
    stops.push(() => mock.close())

    const registry = createRegistry()
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    const config = loadConfig({
      configPath: writeConfig(`server:
  port: 0
  collectInterval: 1s
  collectTimeout: 2s
  mutationsPerMinute: 1000
  adminToken: ${ADMIN_TOKEN}
scheduler:
  sweep: "${options.sweepSchedule ?? '*/2 * * * * *'}"
  sweepApply: true
  doctor: "*/2 * * * * *"
targets:
  - name: chat
    databaseUrl: ${t.url}
    sessions:
      - name: ${LIVE_TARGETS.chat}
        table: public.conversation_sessions
        columns:
          { id: session_id, active: is_active, startedAt: session_start, lastSeenAt: last_activity_at, endedAt: [session_end, ended_at], durationSeconds: duration_seconds, group: agent_role }
        orphanAfter: 2h
  - name: jobs
    databaseUrl: ${jobs.url}
    sessions:
      - name: ${LIVE_TARGETS.jobs}
        table: public.llm_sessions
        columns: { id: id, startedAt: created_at, lastSeenAt: last_query_at, endedAt: expired_at, group: role }
        orphanAfter: 30m
        closeTimestamp: lastSeen
`),
      env: {},
    }).config
    const service = await startService({
      config,
      logger: createLogger({ level: 'warn', format: 'json', destination }),
      registry,
      scheduler: true,
    })
    stops.push(() => service.close(5_000))

    const chats: ChatServer[] = []
    for (const [i, model] of (options.models ?? ['claude-mock-sonnet', 'claude-mock-haiku']).entries()) {
      const chat = await startChatServer({
        databaseUrl: t.url,
        llm: { baseURL: mock.url, apiKey: 'test-key', maxRetries: 0, timeoutMs: 10_000 },
        model,
        registry,
        poolMax: 3,
        poolName: `chat_${i + 1}`,
        applicationName: `warden-chat-${i + 1}`,
        llmTimeoutMs: 10_000,
      })
      chats.push(chat)
      stops.push(() => chat.close({ graceMs: 0 }))
    }

    const loops: Array<Promise<void>> = []
    stops.push(async () => {
      running = false
      await Promise.all(loops)
    })
    for (const chat of chats) {
      for (let w = 0; w < (options.workersPerChat ?? 2); w += 1) loops.push(chatClient(chat.chatUrl, w, isRunning, traffic))
    }
    const leakyStarted = new Promise<boolean>((resolve) =>
      loops.push(poolScope(() => leakyApp(t.url, mock.url, registry, isRunning, traffic, resolve))),
    )
    if (!(await leakyStarted)) throw new Error(`the leaky app could not start: ${traffic.lastFailure}`)
    loops.push(
      (async () => {
        // New orphans keep arriving, so sweeps keep closing some and the orphan gauges move.
        while (running) {
          await sleep(1500)
          if (!running) return
          await t
            .exec(
              `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
               SELECT gen_random_uuid(), 'late', ($1::text[])[1 + (random() * 2)::int], true, now() - interval '6 hours', now() - interval '3 hours' FROM generate_series(1, 2)`,
              [GROUPS],
            )
            .then(() => (traffic.orphansAdded += 2))
            .catch(() => undefined)
        }
      })(),
    )

    const instance = new URL(service.url).host
    const prometheus = await startPrometheus([instance])
    stops.push(() => prometheus.stop())
    return { service, prometheus, mock, chats, job: 'warden', instance, traffic, logs, stop: stopAll }
  } catch (error) {
    running = false
    await stopAll()
    throw error
  }
}

/** Grafana's values for one instance of the live stack: every other variable as "All" (.+). */
export function liveVariables(stack: Pick<LiveStack, 'job' | 'instance'>, rateInterval: string): Record<string, string> {
  return {
    job: regexLiteral(stack.job),
    instance: regexLiteral(stack.instance),
    pool: '.+',
    model: '.+',
    target: '.+',
    table: '.+',
    __rate_interval: rateInterval,
    datasource: 'unused',
  }
}

export interface RangeSeries {
  metric: Record<string, string>
  values: Array<[number, number]>
}

/** /api/v1/query_range: a matrix, values as numbers (NaN kept). */
export async function queryRange(
  prometheusUrl: string,
  expr: string,
  start: number,
  end: number,
  stepSeconds: number,
): Promise<RangeSeries[]> {
  const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(stepSeconds) })
  const response = await fetch(`${prometheusUrl}/api/v1/query_range`, { method: 'POST', body: params })
  const body = (await response.json()) as {
    status: string
    error?: string
    data?: { result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> }
  }
  if (body.status !== 'success') throw new Error(`query_range ${expr} failed: ${body.error}`)
  return body.data!.result.map((series) => ({
    metric: series.metric,
    values: series.values.map(([time, value]) => [time, Number(value)] as [number, number]),
  }))
}

/** /api/v1/label/<label>/values restricted to a selector: what a label_values() variable offers. */
export async function labelValues(prometheusUrl: string, label: string, selector: string): Promise<string[]> {
  const response = await fetch(
    `${prometheusUrl}/api/v1/label/${encodeURIComponent(label)}/values?${new URLSearchParams({ 'match[]': selector })}`,
  )
  const body = (await response.json()) as { status: string; error?: string; data?: string[] }
  if (body.status !== 'success') throw new Error(`label values of ${label} for ${selector} failed: ${body.error}`)
  return body.data!
}
