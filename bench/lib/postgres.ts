/** The PostgreSQL a bench runs on, the session data it seeds, and the machine it ran on. */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres, type EmbeddedPostgres, type EmbeddedPostgresOptions } from '../../src/embedded/embedded-postgres.js'

export const ROOT = new URL('../..', import.meta.url).pathname

export interface BenchPostgres {
  /** a superuser URL to the server's `postgres` database */
  adminUrl: string
  /** set when the bench started its own server (halt/resume and server CPU need it) */
  embedded: EmbeddedPostgres | undefined
  version: string
  /** the same server, another database */
  urlOf(database: string): string
  /** CPU seconds the whole server has used so far (embedded only, else null) */
  cpuSeconds(): number | null
  stop(): Promise<void>
}

/** `url` (or WARDEN_BENCH_DATABASE_URL) when given, else an embedded PostgreSQL started here. */
export async function benchPostgres(url: string | undefined, settings?: EmbeddedPostgresOptions['settings']): Promise<BenchPostgres> {
  let embedded: EmbeddedPostgres | undefined
  let adminUrl = url ?? process.env.WARDEN_BENCH_DATABASE_URL
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres({ settings })
    adminUrl = embedded.url
  }
  const version = await withClient(adminUrl, async (c) => (await c.query('SHOW server_version')).rows[0].server_version as string)
  return {
    adminUrl,
    embedded,
    version,
    urlOf(database) {
      const u = new URL(adminUrl)
      u.pathname = `/${database}`
      return u.toString()
    },
    cpuSeconds: () => (embedded ? serverCpuSeconds(embedded.dataDir) : null),
    async stop() {
      await embedded?.stop()
    },
  }
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

function readStat(pid: number): { ppid: number; self: number; children: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { ppid: Number(f[1]), self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) }
  } catch {
    return null
  }
}

/**
 * The postmaster, its live children (backends, checkpointer, …) and, through cutime/cstime, the
 * children already reaped: what the whole server has cost so far (as bench/sweep.js counts it).
 */
function serverCpuSeconds(dataDir: string): number | null {
  let postmaster: number
  try {
    postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return null
  }
  const pm = readStat(postmaster)
  if (!pm) return null
  let ticks = pm.self + pm.children
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const st = readStat(Number(entry))
    if (st && st.ppid === postmaster) ticks += st.self
  }
  return ticks / CLK_TCK
}

/**
 * Fills `table` (the examples/conversation_sessions schema, created when missing) with `rows`
 * deterministic sessions: 98 % closed history, 2 % open, a third of the open ones orphaned
 * (silent > 2 h), six agent roles. VACUUM ANALYZE at the end. Returns the seconds it took.
 */
export async function seedSessions(client: pg.Client, table: string, rows: number): Promise<number> {
  const started = performance.now()
  await client.query(readFileSync(join(ROOT, 'examples/conversation_sessions/schema.sql'), 'utf8'))
  if (table !== 'conversation_sessions')
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (LIKE conversation_sessions INCLUDING ALL)`)
  await client.query(`TRUNCATE ${table}`)
  for (let from = 1; from <= rows; from += 500_000) {
    const to = Math.min(rows, from + 499_999)
    await client.query(
      `INSERT INTO ${table} (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds)
       SELECT gen_random_uuid(), 'user-' || (i % 50000), (ARRAY['support','billing','coder','triage','research','sales'])[1 + i % 6],
              open, started, CASE WHEN open AND i % 3 = 0 THEN now() - interval '3 hours' ELSE now() - interval '1 minute' END,
              CASE WHEN open THEN NULL ELSE started + interval '20 minutes' END,
              CASE WHEN open THEN NULL ELSE started + interval '20 minutes' END,
              CASE WHEN open THEN NULL ELSE 1200 END
         FROM (SELECT i, i % 50 = 0 AS open, now() - (i % 43200) * interval '1 minute' AS started FROM generate_series($1::int, $2::int) AS i) s`,
      [from, to],
    )
  }
  await client.query(`VACUUM ANALYZE ${table}`)
  return (performance.now() - started) / 1000
}

export interface Machine {
  nproc: number
  memoryGiB: number
  freeMemoryGiB: number
  cpu: string
  kernel: string
  node: string
  /** other work on the machine skews tail latencies: recorded with the figures */
  loadAverage: number[]
  postgres: string
  embedded: boolean
}

export function machine(db: BenchPostgres): Machine {
  let kernel = 'unknown'
  try {
    kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()
  } catch {
    // not every platform has uname
  }
  return {
    nproc: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    cpu: cpus()[0]?.model ?? 'unknown',
    kernel,
    node: process.version,
    loadAverage: loadavg().map((n) => Math.round(n * 100) / 100),
    postgres: db.version,
    embedded: db.embedded !== undefined,
  }
}

export const describeMachine = (m: Machine) =>
  `machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, PostgreSQL ${m.postgres}${m.embedded ? ' (embedded)' : ''}, load average ${m.loadAverage.join(' ')}`
