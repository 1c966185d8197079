import { redactUrl } from '../core/config.js'
import { showPools, showStats, showVersion } from '../db/queries/pgbouncer.js'
import { closeQuietly, elapsedMs, errorCode, errorMessage, freshClient, TIMED_OUT, withDeadline } from './fresh-client.js'
import { PROBE_APPLICATION_NAME } from './acquire-probe.js'

export interface PgBouncerProbeOptions {
  /** deadline over connect and both SHOW commands, in ms (default 5000) */
  timeoutMs?: number
}

/** One row of SHOW POOLS: a (database, user) pool. */
export interface PgBouncerPool {
  database: string
  user: string
  /** clients paired with a server connection */
  clActive: number
  /** clients waiting for a server connection: the queue an app's pool timeout counts down on */
  clWaiting: number
  svActive: number
  svIdle: number
  svUsed: number
  svTested: number
  svLogin: number
  /** age of the oldest waiting client: maxwait + maxwait_us / 1e6 */
  maxwaitSeconds: number
  poolMode: string | null
}

/** One row of SHOW STATS, times converted from PgBouncer's microseconds to seconds. */
export interface PgBouncerStats {
  database: string
  totalXactCount: number
  totalQueryCount: number
  totalReceivedBytes: number
  totalSentBytes: number
  totalXactTimeSeconds: number
  totalQueryTimeSeconds: number
  /** time clients spent waiting for a server connection, summed */
  totalWaitTimeSeconds: number
  avgXactTimeSeconds: number
  avgQueryTimeSeconds: number
  avgWaitTimeSeconds: number
}

export interface PgBouncerProbe {
  /** the admin console URL, password redacted */
  url: string
  reachable: boolean
  /** why the console could not be read; null when it was */
  error: string | null
  version: string | null
  /** the admin console's own 'pgbouncer' pseudo-database is left out */
  pools: PgBouncerPool[]
  stats: PgBouncerStats[]
  durationMs: number
}

export const DEFAULT_PGBOUNCER_TIMEOUT_MS = 5000
const ADMIN_DATABASE = 'pgbouncer'

type Row = Record<string, unknown>
const num = (value: unknown): number => {
  const n = Number(value ?? 0)
  return Number.isFinite(n) ? n : 0
}
const seconds = (microseconds: unknown) => num(microseconds) / 1e6

function toPool(row: Row): PgBouncerPool {
  return {
    database: String(row.database),
    user: String(row.user),
    clActive: num(row.cl_active),
    clWaiting: num(row.cl_waiting),
    svActive: num(row.sv_active),
    svIdle: num(row.sv_idle),
    svUsed: num(row.sv_used),
    svTested: num(row.sv_tested),
    svLogin: num(row.sv_login),
    // maxwait alone is whole seconds: a queue of 900 ms would read as no queue at all.
    maxwaitSeconds: num(row.maxwait) + num(row.maxwait_us) / 1e6,
    poolMode: row.pool_mode === undefined || row.pool_mode === null ? null : (row.pool_mode as string),
  }
}

function toStats(row: Row): PgBouncerStats {
  return {
    database: String(row.database),
    totalXactCount: num(row.total_xact_count),
    totalQueryCount: num(row.total_query_count),
    totalReceivedBytes: num(row.total_received),
    totalSentBytes: num(row.total_sent),
    totalXactTimeSeconds: seconds(row.total_xact_time),
    totalQueryTimeSeconds: seconds(row.total_query_time),
    totalWaitTimeSeconds: seconds(row.total_wait_time),
    avgXactTimeSeconds: seconds(row.avg_xact_time),
    avgQueryTimeSeconds: seconds(row.avg_query_time),
    avgWaitTimeSeconds: seconds(row.avg_wait_time),
  }
}

function explain(code: string | undefined, message: string): string {
  if (code === 'ECONNREFUSED') return `${message} (is pgbouncer running, and are listen_addr and listen_port right?)`
  if (/not allowed|no such user|password authentication/i.test(message))
    return `${message} (the user must be listed in admin_users or stats_users)`
  if (/unrecognized configuration parameter|syntax error/i.test(message))
    return `${message} (is this a PgBouncer admin console? the URL's database must be "pgbouncer")`
  return message
}

/**
 * Reads a PgBouncer admin console: per pool, who is waiting for a server connection and for how
 * long, and the wait totals. An unreachable or refusing console is a finding, not an exception.
 */
export async function probePgBouncer(url: string, options: PgBouncerProbeOptions = {}): Promise<PgBouncerProbe> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PGBOUNCER_TIMEOUT_MS
  const shown = redactUrl(url)
  const client = freshClient(url, PROBE_APPLICATION_NAME)
  const started = performance.now()
  const failed = (error: string): PgBouncerProbe => ({
    url: shown,
    reachable: false,
    error,
    version: null,
    pools: [],
    stats: [],
    durationMs: elapsedMs(started),
  })

  const work = (async () => {
    await client.connect()
    // No values and no name: pg sends a simple Query message, the only kind the console accepts.
    const pools = await client.query<Row>(showPools().text)
    const stats = await client.query<Row>(showStats().text)
    const version = await client.query<Row>(showVersion().text).catch(() => undefined)
    return { pools: pools.rows, stats: stats.rows, version: version?.rows[0]?.version }
  })()
  let timedOut = false
  try {
    const result = await withDeadline(work, timeoutMs)
    timedOut = result === TIMED_OUT
    if (result === TIMED_OUT) return failed(`PgBouncer admin console at ${shown} did not answer within ${timeoutMs} ms`)
    return {
      url: shown,
      reachable: true,
      error: null,
      version: result.version === undefined ? null : (result.version as string),
      pools: result.pools.filter((row) => row.database !== ADMIN_DATABASE).map(toPool),
      stats: result.stats.filter((row) => row.database !== ADMIN_DATABASE).map(toStats),
      durationMs: elapsedMs(started),
    }
  } catch (error) {
    const code = errorCode(error)
    return failed(
      `cannot read PgBouncer admin console at ${shown}: ${explain(code, `${code && !errorMessage(error).includes(code) ? `${code} ` : ''}${errorMessage(error)}`)}`,
    )
  } finally {
    await closeQuietly(client, timedOut)
  }
}
