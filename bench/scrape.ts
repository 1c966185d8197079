/**
 * /metrics latency and freshness of `warden serve` against a large session table, in three
 * states: healthy, the table locked (ACCESS EXCLUSIVE held by another transaction), and the
 * database down (the embedded PostgreSQL halted). Beside it, a bare prom-client registry served
 * the same way. The claims under test: a scrape never waits on the database, and the gauges are
 * fresh when the database is healthy.
 *
 *   node --import tsx bench/scrape.ts [--rows 2000000] [--requests 2000] [--repeats 20] [--poll-ms 50] [--url postgres://…]
 *
 * Freshness, two ways: (a) warden_collector_age_seconds in every scrape's body; (b) change to
 * visible: the bench changes the database with SQL (a session opened then closed; an
 * idle-in-transaction backend opened then closed) and polls /metrics until the gauge shows it.
 * Without --url (or WARDEN_BENCH_DATABASE_URL) it runs on its own embedded PostgreSQL; the
 * "database down" state needs that one (an external server is not stopped). Results: tables on
 * stdout and JSON in bench/results/.
 */
import { parseArgs } from 'node:util'
import express from 'express'
import pg from 'pg'
import { loadConfig } from '../src/core/config.js'
import { createRegistry } from '../src/metrics/registry.js'
import { listen } from '../src/server/listen.js'
import { createLogger } from '../src/server/logger.js'
import { startService } from '../src/server/service.js'
import { scrapeSeries, sleep, sum, value, visibleAfter } from './lib/metrics.js'
import { benchPostgres, describeMachine, machine, seedSessions, withClient } from './lib/postgres.js'
import { table, writeResults } from './lib/results.js'
import { summarize, type Summary } from './lib/stats.js'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '2000000' },
    requests: { type: 'string', default: '2000' },
    repeats: { type: 'string', default: '20' },
    'poll-ms': { type: 'string', default: '50' },
    url: { type: 'string' },
  },
})
const ROWS = Number(args.rows)
const REQUESTS = Number(args.requests)
const REPEATS = Number(args.repeats)
const POLL_MS = Number(args['poll-ms'])
const LAG_TIMEOUT_MS = 10_000
const DATABASE = 'warden_bench_scrape'
const TARGET = 'default'
const LAG_APP = 'warden-bench-lag'

type State = 'healthy' | 'table locked' | 'database down'

interface Freshness {
  state: State
  /** (a) age of the gauges in each scrape's body, seconds */
  ageSessions: Summary
  agePgConnections: Summary
  /** (b) ms from the SQL change to the first scrape showing it; null entries timed out */
  lagSessions: Summary | null
  lagPgConnections: Summary | null
  lagTimeouts: number
  /** database down: ms from the server accepting connections again to fresh gauges at scrape */
  recovery: Summary | null
  note?: string
}

async function main(): Promise<void> {
  const db = await benchPostgres(args.url)
  await withClient(db.adminUrl, async (admin) => {
    const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE])).rowCount
    if (!exists) await admin.query(`CREATE DATABASE ${DATABASE}`)
  })
  const url = db.urlOf(DATABASE)
  await withClient(url, async (client) => {
    const present = await client.query("SELECT to_regclass('public.conversation_sessions') IS NOT NULL AS ok").then((r) => r.rows[0].ok)
    const count = present ? (await client.query('SELECT count(*)::int AS n FROM conversation_sessions')).rows[0].n : -1
    if (count === ROWS) return
    const seconds = await seedSessions(client, 'conversation_sessions', ROWS)
    process.stderr.write(`seeded ${ROWS} rows in ${seconds.toFixed(1)} s\n`)
  })

  const { config } = loadConfig({ env: {}, flags: [{ key: 'database.url', flag: '--url', value: url }] })
  config.server.port = 0
  config.server.collectInterval = 1
  config.server.collectTimeout = 2
  const logger = createLogger({ level: 'error', format: 'json' })
  const service = await startService({ config, logger })
  const metricsUrl = `${service.url}/metrics`
  const bareRegistry = createRegistry()
  const bareApp = express()
  bareApp.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', bareRegistry.contentType)
    res.send(await bareRegistry.metrics())
  })
  const bare = await listen(bareApp, '127.0.0.1', 0)
  const ageOf = (body: string, collector: string) => value(body, 'warden_collector_age_seconds', { target: TARGET, collector })
  const activeSessions = (body: string) => sum(body, 'warden_sessions_active', { target: TARGET })
  const lagBackends = (body: string) =>
    value(body, 'warden_pg_connections', { target: TARGET, state: 'idle in transaction', application_name: LAG_APP }) ?? 0

  const latency: Array<{ scenario: State; target: string; errors: number } & Summary> = []
  const freshness: Freshness[] = []
  /** scrape latency of both targets, and the age of warden's gauges in each of its scrapes */
  const measure = async (state: State) => {
    const ages = { sessions: [] as number[], pg: [] as number[] }
    const warden = await scrapeSeries(metricsUrl, REQUESTS, {
      warmup: 100,
      onScrape: ({ body }) => {
        ages.sessions.push(ageOf(body, 'sessions') ?? Number.NaN)
        ages.pg.push(ageOf(body, 'pg_connections') ?? Number.NaN)
      },
    })
    latency.push({ scenario: state, target: 'warden serve', errors: warden.errors, ...summarize(warden.times) })
    const plain = await scrapeSeries(`${bare.url}/metrics`, REQUESTS, { warmup: 100 })
    latency.push({ scenario: state, target: 'bare prom-client', errors: plain.errors, ...summarize(plain.times) })
    return { ages, lastBody: warden.lastBody }
  }
  /** a change at a random point of the collection cycle, then poll until /metrics shows it */
  const lag = async (change: () => Promise<void>, seen: (body: string) => boolean, into: number[], timeouts: { n: number }) => {
    await sleep(Math.random() * 1000 * config.server.collectInterval)
    await change()
    const ms = await visibleAfter(metricsUrl, performance.now(), seen, { pollMs: POLL_MS, timeoutMs: LAG_TIMEOUT_MS })
    if (ms === null) timeouts.n += 1
    else into.push(ms)
  }
  /** an idle-in-transaction backend of LAG_APP, opened then closed: pg_connections must show both */
  const backendLag = async (into: number[], timeouts: { n: number }) => {
    const backend = new pg.Client({ connectionString: url, application_name: LAG_APP })
    await backend.connect()
    await lag(
      async () => {
        await backend.query('BEGIN')
        await backend.query('SELECT 1')
      },
      (body) => lagBackends(body) === 1,
      into,
      timeouts,
    )
    await lag(
      () => backend.end(),
      (body) => lagBackends(body) === 0,
      into,
      timeouts,
    )
  }

  const changer = new pg.Client({ connectionString: url })
  await changer.connect()
  try {
    await service.collection.refresh()

    // healthy
    {
      const { ages, lastBody } = await measure('healthy')
      const baseline = activeSessions(lastBody)
      const sessions: number[] = []
      const pgLag: number[] = []
      const timeouts = { n: 0 }
      for (let i = 0; i < REPEATS; i += 1) {
        let id = ''
        await lag(
          async () => {
            const { rows } = await changer.query(
              `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
               VALUES (gen_random_uuid(), 'bench-lag', 'support', true, now(), now()) RETURNING session_id`,
            )
            id = rows[0].session_id
          },
          (body) => activeSessions(body) === baseline + 1,
          sessions,
          timeouts,
        )
        await lag(
          async () => void (await changer.query('DELETE FROM conversation_sessions WHERE session_id = $1', [id])),
          (body) => activeSessions(body) === baseline,
          sessions,
          timeouts,
        )
        await backendLag(pgLag, timeouts)
      }
      freshness.push({
        state: 'healthy',
        ageSessions: summarize(ages.sessions, 3),
        agePgConnections: summarize(ages.pg, 3),
        lagSessions: summarize(sessions, 0),
        lagPgConnections: summarize(pgLag, 0),
        lagTimeouts: timeouts.n,
        recovery: null,
      })
    }

    // table locked: the sessions change itself would wait on the lock, so only pg_connections' lag is measured
    let stalledBody = ''
    {
      const locker = new pg.Client({ connectionString: url })
      await locker.connect()
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
      try {
        const { ages, lastBody } = await measure('table locked')
        stalledBody = lastBody
        const pgLag: number[] = []
        const timeouts = { n: 0 }
        for (let i = 0; i < REPEATS; i += 1) await backendLag(pgLag, timeouts)
        freshness.push({
          state: 'table locked',
          ageSessions: summarize(ages.sessions, 3),
          agePgConnections: summarize(ages.pg, 3),
          lagSessions: null,
          lagPgConnections: summarize(pgLag, 0),
          lagTimeouts: timeouts.n,
          recovery: null,
          note: 'a session change cannot be made: it waits on the lock',
        })
      } finally {
        await locker.query('ROLLBACK')
        await locker.end()
      }
    }

    // database down: the embedded server halted; after it is back, how long until the gauges are fresh again
    if (db.embedded) {
      await changer.end().catch(() => undefined)
      const recovery: number[] = []
      const recover = async () => {
        const resumed = performance.now()
        await db.embedded!.resume()
        const ms = await visibleAfter(
          metricsUrl,
          resumed,
          (body) =>
            value(body, 'warden_target_up', { target: TARGET }) === 1 &&
            (ageOf(body, 'sessions') ?? Infinity) * 1000 < performance.now() - resumed &&
            (ageOf(body, 'pg_connections') ?? Infinity) * 1000 < performance.now() - resumed,
          { pollMs: POLL_MS, timeoutMs: LAG_TIMEOUT_MS * 3 },
        )
        if (ms !== null) recovery.push(ms)
      }
      await db.embedded.halt()
      const { ages } = await measure('database down')
      await recover()
      for (let i = 1; i < Math.min(REPEATS, 5); i += 1) {
        await db.embedded.halt()
        await sleep(1000 + Math.random() * 1000)
        await recover()
      }
      freshness.push({
        state: 'database down',
        ageSessions: summarize(ages.sessions, 3),
        agePgConnections: summarize(ages.pg, 3),
        lagSessions: null,
        lagPgConnections: null,
        lagTimeouts: Math.min(REPEATS, 5) - recovery.length,
        recovery: summarize(recovery, 0),
        note: 'ages grow for as long as it is down (the latency line took that long); no change can be made',
      })
    }

    const sessionsCollectSeconds = value(stalledBody, 'warden_collector_duration_seconds', { target: TARGET, collector: 'sessions' })
    const stalledState = {
      pgUp: value(stalledBody, 'warden_pg_up'),
      sessionsCollectorSuccess: value(stalledBody, 'warden_collector_success', { collector: 'sessions' }),
      pgConnectionsCollectorSuccess: value(stalledBody, 'warden_collector_success', { collector: 'pg_connections' }),
    }
    const m = machine(db)
    const report = {
      date: new Date().toISOString(),
      rows: ROWS,
      requests: REQUESTS,
      repeats: REPEATS,
      pollMs: POLL_MS,
      server: { collectInterval: 1, collectTimeout: 2, freshFor: config.server.freshFor, scrapeWait: config.server.scrapeWait },
      machine: m,
      sessionsCollectSecondsWhileLocked: sessionsCollectSeconds,
      stalledState,
      latency,
      freshness,
    }
    const file = writeResults('scrape', report)

    console.log(describeMachine(m))
    console.log(
      `table: ${ROWS} rows; ${REQUESTS} sequential scrapes per latency line; ${REPEATS} repeats of each change (poll every ${POLL_MS} ms); collectInterval 1 s, collectTimeout 2 s, freshFor ${config.server.freshFor} s, scrapeWait ${config.server.scrapeWait * 1000} ms`,
    )
    console.log(
      table(
        ['scenario', 'target', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors'],
        latency.map((r) => [r.scenario, r.target, r.p50, r.p90, r.p99, r.max, r.errors]),
        2,
      ),
    )
    const pair = (s: Summary | null, unit = '') => (s && s.n > 0 ? `${s.p50}${unit} / ${s.p99}${unit} (n ${s.n})` : '–')
    console.log()
    console.log(
      table(
        [
          'state',
          'age at scrape, sessions p50 / p99 s',
          'age at scrape, pg_connections p50 / p99 s',
          'change → visible, sessions p50 / p99 ms',
          'change → visible, pg_connections p50 / p99 ms',
          'back up → fresh p50 / p99 ms',
          'timeouts',
        ],
        freshness.map((f) => [
          f.state,
          pair(f.ageSessions),
          pair(f.agePgConnections),
          pair(f.lagSessions),
          pair(f.lagPgConnections),
          pair(f.recovery),
          f.lagTimeouts,
        ]),
      ),
    )
    for (const f of freshness) if (f.note) console.log(`${f.state}: ${f.note}`)
    console.log(
      `while locked: warden_pg_up ${stalledState.pgUp}, sessions collector success ${stalledState.sessionsCollectorSuccess}, pg_connections collector success ${stalledState.pgConnectionsCollectorSuccess}`,
    )
    console.log(`results: ${file}`)
    const worst = Math.max(...latency.filter((r) => r.target === 'warden serve').map((r) => r.p99))
    if (worst > 50) process.exitCode = 1
  } finally {
    await changer.end().catch(() => undefined)
    await Promise.all([service.close(5_000), bare.close(1_000)])
    await db.stop()
  }
}

await main()
