import { formatDuration } from '../core/duration.js'
import { sql } from '../db/sql.js'
import { grade, type Check } from './types.js'

interface Row {
  pid: number
  database: string | null
  applicationName: string
  state: string | null
  transactionSeconds: number
  query: string
}

export const longTransactions: Check<Row> = {
  name: 'long-transactions',
  help: 'Client transactions open longer than the warn threshold, in any state: they hold locks, a connection, and back vacuum up.',
  sql: (ctx) =>
    sql(
      'check.longTransactions',
      `SELECT pid, datname AS database, application_name AS "applicationName", state,
              EXTRACT(EPOCH FROM (now() - xact_start))::float8 AS "transactionSeconds",
              left(query, 200) AS query
         FROM pg_catalog.pg_stat_activity
        WHERE xact_start IS NOT NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
          AND xact_start < now() - make_interval(secs => $1)
        ORDER BY xact_start
        LIMIT 50`,
      [ctx.checks.longTransactions.warn],
    ),
  evaluate(rows, ctx) {
    if (rows.length === 0)
      return { status: 'ok', message: `no transaction open longer than ${formatDuration(ctx.checks.longTransactions.warn)}` }
    const oldest = rows[0]!
    return {
      status: grade(oldest.transactionSeconds, ctx.checks.longTransactions),
      message: `${rows.length} transaction(s) open longer than ${formatDuration(ctx.checks.longTransactions.warn)}; oldest: ${oldest.applicationName || '(no application_name)'} pid ${oldest.pid}, ${formatDuration(oldest.transactionSeconds)}, ${oldest.state}`,
      evidence: rows,
    }
  },
}
