/**
 * /metrics latency of `warden serve` against a large session table, healthy and with the table
 * stalled (ACCESS EXCLUSIVE lock held by another transaction), beside a bare prom-client
 * registry served the same way. The claim under test: a scrape never waits on the database.
 *
 *   node --import tsx bench/scrape.ts [--rows 2000000] [--requests 2000] [--url postgres://…]
 *
 * Without --url (or WARDEN_BENCH_DATABASE_URL) it runs on its own embedded PostgreSQL.
 * Results: a table on stdout and JSON in bench/results/.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import express from 'express'
import pg from 'pg'
import { loadConfig } from '../src/core/config.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { createRegistry } from '../src/metrics/registry.js'
import { listen } from '../src/server/listen.js'
import { createLogger } from '../src/server/logger.js'
import { startService } from '../src/server/service.js'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '2000000' },
    requests: { type: 'string', default: '2000' },
    url: { type: 'string' },
  },
})
const ROWS = Number(args.rows)
const REQUESTS = Number(args.requests)
const ROOT = new URL('..', import.meta.url).pathname
const DATABASE = 'warden_bench_scrape'

interface Stats {
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
  errors: number
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** Sequential scrapes, as Prometheus does per target, after a warm-up. */
async function scrape(url: string, count: number): Promise<Stats & { lastBody: string }> {
  let lastBody = ''
  for (let i = 0; i < 100; i += 1) await (await fetch(url)).text()
  const times: number[] = []
  let errors = 0
  for (let i = 0; i < count; i += 1) {
    const started = performance.now()
    const response = await fetch(url)
    lastBody = await response.text()
    times.push(performance.now() - started)
    if (response.status !== 200) errors += 1
  }
  const sorted = [...times].sort((a, b) => a - b)
  const round = (n: number) => Math.round(n * 100) / 100
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]!),
    mean: round(times.reduce((a, b) => a + b, 0) / times.length),
    errors,
    lastBody,
  }
}

const sample = (body: string, series: string) => new RegExp(`^${series.replace(/[{}"()[\]]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1]

async function seed(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(readFileSync(join(ROOT, 'examples/conversation_sessions/schema.sql'), 'utf8'))
    const { rows } = await client.query('SELECT count(*)::int AS n FROM conversation_sessions')
    if (rows[0].n === ROWS) return
    await client.query('TRUNCATE conversation_sessions')
    const started = performance.now()
    // 98 % closed history, 2 % open; a third of the open ones orphaned (silent > 2 h); six agent roles
    for (let from = 1; from <= ROWS; from += 500_000) {
      const to = Math.min(ROWS, from + 499_999)
      await client.query(
        `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds)
         SELECT gen_random_uuid(), 'user-' || (i % 50000), (ARRAY['support','billing','coder','triage','research','sales'])[1 + i % 6],
                open, started, CASE WHEN open AND i % 3 = 0 THEN now() - interval '3 hours' ELSE now() - interval '1 minute' END,
                CASE WHEN open THEN NULL ELSE started + interval '20 minutes' END,
                CASE WHEN open THEN NULL ELSE started + interval '20 minutes' END,
                CASE WHEN open THEN NULL ELSE 1200 END
           FROM (SELECT i, i % 50 = 0 AS open, now() - (i % 43200) * interval '1 minute' AS started FROM generate_series($1::int, $2::int) AS i) s`,
        [from, to],
      )
    }
    await client.query('VACUUM ANALYZE conversation_sessions')
    process.stderr.write(`seeded ${ROWS} rows in ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
  } finally {
    await client.end()
  }
}

async function main(): Promise<void> {
  let embedded: EmbeddedPostgres | undefined
  let adminUrl = args.url ?? process.env.WARDEN_BENCH_DATABASE_URL
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres()
    adminUrl = embedded.url
  }
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE])).rowCount
  if (!exists) await admin.query(`CREATE DATABASE ${DATABASE}`)
  const pgVersion = (await admin.query('SHOW server_version')).rows[0].server_version as string
  await admin.end()
  const url = new URL(adminUrl)
  url.pathname = `/${DATABASE}`
  await seed(url.toString())

  const { config } = loadConfig({ env: {}, flags: [{ key: 'database.url', flag: '--url', value: url.toString() }] })
  config.server.port = 0
  config.server.collectInterval = 1
  config.server.collectTimeout = 2
  const logger = createLogger({ level: 'error', format: 'json' })
  const service = await startService({ config, logger })
  const bareRegistry = createRegistry()
  const bareApp = express()
  bareApp.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', bareRegistry.contentType)
    res.send(await bareRegistry.metrics())
  })
  const bare = await listen(bareApp, '127.0.0.1', 0)

  try {
    await service.collection.refresh()
    const results: Array<{ scenario: string; target: string } & Stats> = []
    const run = async (scenario: string, target: string, endpoint: string) => {
      const { lastBody, ...stats } = await scrape(endpoint, REQUESTS)
      results.push({ scenario, target, ...stats })
      return lastBody
    }

    const healthy = await run('healthy', 'warden serve', `${service.url}/metrics`)
    await run('healthy', 'bare prom-client', `${bare.url}/metrics`)
    const sessionsCollectSeconds = Number(sample(healthy, 'warden_collector_duration_seconds{collector="sessions"}'))

    const locker = new pg.Client({ connectionString: url.toString() })
    await locker.connect()
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
    let stalled: string
    try {
      stalled = await run('table locked', 'warden serve', `${service.url}/metrics`)
      await run('table locked', 'bare prom-client', `${bare.url}/metrics`)
    } finally {
      await locker.query('ROLLBACK')
      await locker.end()
    }

    const stalledState = {
      pgUp: sample(stalled, 'warden_pg_up'),
      sessionsCollectorSuccess: sample(stalled, 'warden_collector_success{collector="sessions"}'),
      pgConnectionsCollectorSuccess: sample(stalled, 'warden_collector_success{collector="pg_connections"}'),
    }
    const machine = {
      nproc: cpus().length,
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
      cpu: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      /** other work on the machine skews tail latencies: recorded with the figures */
      loadAverage: loadavg().map((n) => Math.round(n * 100) / 100),
      postgres: pgVersion,
      embedded: embedded !== undefined,
    }
    const report = {
      date: new Date().toISOString(),
      rows: ROWS,
      requests: REQUESTS,
      machine,
      sessionsCollectSeconds,
      stalledState,
      results,
    }
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
    const file = join(ROOT, 'bench/results', `scrape-${report.date.replace(/[:.]/g, '-')}.json`)
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)

    console.log(
      `machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, PostgreSQL ${machine.postgres}, load average ${machine.loadAverage.join(' ')}`,
    )
    console.log(
      `table: ${ROWS} rows; ${REQUESTS} sequential scrapes per line; sessions collector took ${(sessionsCollectSeconds * 1000).toFixed(1)} ms healthy`,
    )
    console.log('| scenario | target | p50 ms | p90 ms | p99 ms | max ms | errors |')
    console.log('|---|---|---:|---:|---:|---:|---:|')
    for (const r of results) console.log(`| ${r.scenario} | ${r.target} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${r.errors} |`)
    console.log(
      `while locked: warden_pg_up ${stalledState.pgUp}, sessions collector success ${stalledState.sessionsCollectorSuccess}, pg_connections collector success ${stalledState.pgConnectionsCollectorSuccess}`,
    )
    console.log(`results: ${file}`)
    const worst = Math.max(...results.filter((r) => r.target === 'warden serve').map((r) => r.p99))
    if (worst > 50) process.exitCode = 1
  } finally {
    await Promise.all([service.close(5_000), bare.close(1_000)])
    await embedded?.stop()
  }
}

await main()
