import { sql } from '../db/sql.js'
import { grade, type Check } from './types.js'

interface Row {
  used: number
  maxConnections: number
  reserved: number
}

export const CONNECTION_HEADROOM_SQL = sql(
  'check.connectionHeadroom',
  `SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int AS used,
          current_setting('max_connections')::int AS "maxConnections",
          (current_setting('superuser_reserved_connections')::int
            + COALESCE(current_setting('reserved_connections', true), '0')::int) AS reserved`,
)

/** A bigger app pool only moves the cliff (post-mortem 1): this shows how close the server's own cliff is. */
export const connectionHeadroom: Check<Row> = {
  name: 'connection-headroom',
  help: 'Client connections in use against max_connections minus the reserved slots.',
  sql: () => CONNECTION_HEADROOM_SQL,
  evaluate(rows, ctx) {
    const row = rows[0]!
    const usable = Math.max(1, row.maxConnections - row.reserved)
    const percent = (row.used / usable) * 100
    return {
      status: grade(percent, ctx.checks.connectionHeadroom),
      message: `${row.used} of ${usable} usable connections in use (${percent.toFixed(0)}%; max_connections ${row.maxConnections}, ${row.reserved} reserved), ${usable - row.used} left`,
      evidence: [{ ...row, usable, percentUsed: Math.round(percent * 10) / 10, headroom: usable - row.used }],
    }
  },
}
