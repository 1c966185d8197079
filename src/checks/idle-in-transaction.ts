import { formatDuration } from '../core/duration.js'
import { sql } from '../db/sql.js'
import { grade, type Check } from './types.js'

interface Row {
  pid: number
  database: string | null
  user: string | null
  applicationName: string
  clientAddr: string | null
  state: string
  transactionSeconds: number
  idleSeconds: number
  query: string
}

export const IDLE_IN_TRANSACTION_SQL = sql(
  'check.idleInTransaction',
  `SELECT pid, datname AS database, usename AS "user", application_name AS "applicationName",
          client_addr::text AS "clientAddr", state,
          EXTRACT(EPOCH FROM (now() - xact_start))::float8 AS "transactionSeconds",
          EXTRACT(EPOCH FROM (now() - state_change))::float8 AS "idleSeconds",
          left(query, 200) AS query
     FROM pg_catalog.pg_stat_activity
    WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND pid <> pg_backend_pid()
      AND datname = current_database()
    ORDER BY state_change
    LIMIT 50`,
)

/**
 * Post-mortem 1: a handler opens a transaction, reads, then awaits a 5–60 s LLM call. The server
 * sees the backend idle inside its transaction for as long as the call takes; graded on that idle time.
 */
export const idleInTransaction: Check<Row> = {
  name: 'idle-in-transaction',
  help: 'Backends of this database idle inside an open transaction: a connection held across an external (LLM) call. Names the application, the transaction age and the last query.',
  sql: () => IDLE_IN_TRANSACTION_SQL,
  evaluate(rows, ctx) {
    if (rows.length === 0) return { status: 'ok', message: 'no backend is idle in a transaction' }
    const worst = rows.reduce((a, b) => (b.idleSeconds > a.idleSeconds ? b : a))
    const apps = [...new Set(rows.map((row) => row.applicationName || '(no application_name)'))]
    return {
      status: grade(worst.idleSeconds, ctx.checks.idleInTransaction),
      message:
        `${rows.length} backend(s) idle in transaction (${apps.join(', ')}); longest: ${worst.applicationName || '(no application_name)'} pid ${worst.pid} ` +
        `idle ${formatDuration(worst.idleSeconds)} in a ${formatDuration(worst.transactionSeconds)} transaction, last query: ${JSON.stringify(worst.query)}`,
      evidence: rows,
    }
  },
}
