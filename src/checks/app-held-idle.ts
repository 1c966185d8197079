import { formatDuration } from '../core/duration.js'
import { avgOver, maxNow, maxOver, quote, useSecondsRate, usedNow } from '../prometheus/app-metrics.js'
import { round, runQueries } from './app-common.js'
import { grade, type AppCheck, type Severity } from './types.js'

const RANK: Record<Severity, number> = { ok: 0, warn: 1, crit: 2 }

interface HeldIdleRow {
  status: Severity
  prometheus: string
  job: string
  applicationName: string
  heldIdleAvg: number
  usedAvg: number
  usedFrom: string
  heldIdleAvgFromCount: number | null
  max: number | null
  heldIdlePercentOfMax: number | null
  postgresByState: Record<string, number>
  queries: Record<string, string>
}

/** PromQL for one job: connections it reports checked out minus its backends PostgreSQL shows running a statement. */
export function heldIdleQueries(job: string, applicationName: string, windowSeconds: number) {
  const pg = (state?: string) =>
    `warden_pg_connections{application_name=${quote(applicationName)}${state ? `, state=${quote(state)}` : ''}}`
  const used = `sum(${usedNow({ job })})`
  // only instants at which Warden saw the application at all: without its backends there is nothing to compare with
  const seen = `on () (count(${pg()}) > 0)`
  const heldIdle = `clamp_min(${used} - on () (sum(${pg('active')}) or vector(0)), 0) and ${seen}`
  return {
    heldIdleAvg: avgOver(heldIdle, windowSeconds),
    usedAvg: avgOver(`${used} and ${seen}`, windowSeconds),
    // Little's law: connection-seconds checked out per second = the mean number checked out
    usedAvgFromUseTime: `sum(${useSecondsRate(windowSeconds, { job })})`,
    activeAvg: avgOver(`(sum(${pg('active')}) or vector(0)) and ${seen}`, windowSeconds),
    pgByState: avgOver(`sum by (state) (${pg()})`, windowSeconds),
    max: `sum(${maxOver(maxNow({ job }), windowSeconds)})`,
  }
}

/**
 * The cross-signal: an application reports a connection *used* (checked out of its pool) while
 * PostgreSQL shows that application's backends idle, or idle in transaction, at the same instant
 * — checked out and doing nothing on the server. The server alone sees the autocommit case as an
 * ordinary idle pooled connection; the app alone cannot tell a slow query from an LLM call.
 * Joined through Warden's own warden_pg_connections (Prometheus must scrape `warden serve`) by
 * the `apps` mapping, or by an application_name equal to the job. Where the job exports the
 * use-time histogram, its mean checked-out count (Little's law) replaces the used gauge, which
 * instrumentation-pg leaves one connection high after each release until the next pool event.
 */
export const appHeldIdle: AppCheck = {
  name: 'app-held-idle',
  help: "Connections an application's pool reports used while PostgreSQL (warden_pg_connections, by application_name) shows that application's backends not running anything: a connection held across an LLM call, in a transaction or in autocommit. Averaged over the window, as a share of the pool's max.",
  async run({ prom, config, windowSeconds: w, checks }) {
    const jobs = await prom.query(`count by (job) (${usedNow()})`)
    const pgSeen = await prom.query('count(warden_pg_connections)')
    const listing = {
      prometheus: prom.shownUrl,
      queries: { jobs: `count by (job) (${usedNow()})`, warden: 'count(warden_pg_connections)' },
    }
    if (jobs.length === 0) {
      return {
        status: 'skipped',
        message: `no job in Prometheus ${prom.shownUrl} exports db_client_connection_count{db_client_connection_state="used"} (or db_client_connections_usage)`,
        evidence: [listing],
      }
    }
    if (pgSeen.length === 0) {
      return {
        status: 'skipped',
        message: `Prometheus ${prom.shownUrl} has no warden_pg_connections: add \`warden serve\` to its scrape targets so the applications' pools can be compared with what PostgreSQL shows`,
        evidence: [listing],
      }
    }
    const mapping = new Map(config.apps.map((app) => [app.job, app.applicationName]))
    const rows: HeldIdleRow[] = []
    const unmatched: string[] = []
    for (const job of jobs.map((s) => s.metric.job ?? '').sort()) {
      const applicationName = mapping.get(job) ?? job
      const queries = heldIdleQueries(job, applicationName, w)
      const { results, evidence } = await runQueries(prom, queries)
      const instant = results.heldIdleAvg[0]?.value
      const littles = results.usedAvgFromUseTime[0]?.value
      const active = results.activeAvg[0]?.value
      const fromUseTime = littles !== undefined && Number.isFinite(littles) && active !== undefined && Number.isFinite(active)
      const heldIdle = fromUseTime ? Math.max(0, littles - active) : instant
      const usedAvg = fromUseTime ? littles : results.usedAvg[0]?.value
      if (heldIdle === undefined || !Number.isFinite(heldIdle)) {
        unmatched.push(`${job} (application_name ${JSON.stringify(applicationName)}${mapping.has(job) ? '' : ', unmapped'})`)
        continue
      }
      const max = results.max[0]?.value
      const share = max && Number.isFinite(max) ? (heldIdle / max) * 100 : undefined
      const states = Object.fromEntries(results.pgByState.map((s) => [s.metric.state ?? '', round(s.value)]))
      rows.push({
        status: share === undefined ? (heldIdle >= 1 ? 'warn' : 'ok') : grade(share, checks.appHeldIdle),
        prometheus: evidence.prometheus,
        job,
        applicationName,
        heldIdleAvg: round(heldIdle),
        usedAvg: round(usedAvg ?? 0),
        usedFrom: fromUseTime ? 'db_client_connection_use_time' : 'db_client_connection_count',
        heldIdleAvgFromCount: instant === undefined ? null : round(instant),
        max: max ?? null,
        heldIdlePercentOfMax: share === undefined ? null : round(share, 1),
        postgresByState: states,
        queries: evidence.queries,
      })
    }
    if (rows.length === 0) {
      return {
        status: 'skipped',
        message: `no job's connections could be matched with warden_pg_connections: ${unmatched.join(', ')}; map each job to its application_name under \`apps:\``,
        evidence: [listing],
      }
    }
    rows.sort((a, b) => RANK[b.status] - RANK[a.status] || b.heldIdleAvg - a.heldIdleAvg)
    const describe = (row: (typeof rows)[number]) => {
      const idle = row.postgresByState['idle'] ?? 0
      const inTx = (row.postgresByState['idle in transaction'] ?? 0) + (row.postgresByState['idle in transaction (aborted)'] ?? 0)
      return (
        `job ${JSON.stringify(row.job)} reports ${row.usedAvg} connection(s) used on average while PostgreSQL shows application_name ${JSON.stringify(row.applicationName)} ` +
        `running nothing on ${row.heldIdleAvg} of them (${row.heldIdlePercentOfMax ?? '?'}% of its pools' max ${row.max ?? '?'}; backends idle ${idle}, idle in transaction ${inTx} on average)`
      )
    }
    const bad = rows.filter((row) => row.status !== 'ok')
    const skippedNote = unmatched.length ? `; not matched with PostgreSQL: ${unmatched.join(', ')}` : ''
    return {
      status: rows[0]!.status,
      message: bad.length
        ? `${bad.length} application(s) hold connections checked out and idle on the server (across an LLM call, in a transaction or autocommit): ${bad.map(describe).join('; ')} (over ${formatDuration(w)})${skippedNote}`
        : `${rows.length} application(s) use the connections they check out; most held idle: ${describe(rows[0]!)} (over ${formatDuration(w)})${skippedNote}`,
      evidence: rows,
    }
  },
}
