import { formatDuration } from '../core/duration.js'
import { sql } from '../db/sql.js'
import { grade, type Check } from './types.js'

interface Row {
  pid: number
  applicationName: string
  waitingSeconds: number
  query: string
  blockedBy: Array<{ pid: number; applicationName: string; state: string; query: string }>
}

export const BLOCKED_BACKENDS_SQL = sql(
  'check.blockedBackends',
  `SELECT w.pid, w.application_name AS "applicationName",
          EXTRACT(EPOCH FROM (now() - COALESCE(w.query_start, w.state_change)))::float8 AS "waitingSeconds",
          left(w.query, 200) AS query,
          (SELECT json_agg(json_build_object('pid', b.pid, 'applicationName', b.application_name, 'state', b.state, 'query', left(b.query, 200)))
             FROM pg_catalog.pg_stat_activity b
            WHERE b.pid = ANY(pg_blocking_pids(w.pid))) AS "blockedBy"
     FROM pg_catalog.pg_stat_activity w
    WHERE w.wait_event_type = 'Lock' AND w.datname = current_database() AND cardinality(pg_blocking_pids(w.pid)) > 0
    ORDER BY 3 DESC
    LIMIT 50`,
)

/** A transaction held across an LLM call that also holds row locks stalls every writer behind it. */
export const blockedBackends: Check<Row> = {
  name: 'blocked-backends',
  help: 'Backends waiting on a lock, how long, and who blocks them (application, state, query).',
  sql: () => BLOCKED_BACKENDS_SQL,
  evaluate(rows, ctx) {
    if (rows.length === 0) return { status: 'ok', message: 'no backend is waiting on a lock' }
    const worst = rows[0]!
    const blocker = worst.blockedBy?.[0]
    return {
      status: grade(worst.waitingSeconds, ctx.checks.blockedBackends),
      message:
        `${rows.length} backend(s) waiting on locks; longest: ${worst.applicationName || '(no application_name)'} pid ${worst.pid} for ${formatDuration(worst.waitingSeconds)}` +
        (blocker ? `, blocked by ${blocker.applicationName || '(no application_name)'} pid ${blocker.pid} (${blocker.state})` : ''),
      evidence: rows,
    }
  },
}
