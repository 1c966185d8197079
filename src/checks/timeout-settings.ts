import { formatDuration } from '../core/duration.js'
import { sql } from '../db/sql.js'
import type { Check, Severity } from './types.js'

interface Row {
  name: string
  /** milliseconds; 0 means off */
  valueMs: number
  source: string
}

export const TIMEOUT_SETTINGS_SQL = sql(
  'check.timeoutSettings',
  `SELECT name, setting::float8 * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END AS "valueMs", source
     FROM pg_catalog.pg_settings
    WHERE name IN ('idle_in_transaction_session_timeout', 'idle_session_timeout', 'transaction_timeout', 'lock_timeout')
    ORDER BY name`,
)

/**
 * The server-side backstop for post-mortem 1: without idle_in_transaction_session_timeout a
 * transaction left open across an LLM call holds its connection forever; set longer than the
 * application pool's wait, the pool starves before the server steps in. The values are those
 * this connection sees (database and Warden's role settings applied); an app role may differ.
 */
export const timeoutSettings: Check<Row> = {
  name: 'timeout-settings',
  help: 'idle_in_transaction_session_timeout unset, or longer than the application pool waits for a connection (checks.appPoolWait).',
  sql: () => TIMEOUT_SETTINGS_SQL,
  evaluate(rows, ctx) {
    const poolWaitMs = ctx.checks.appPoolWait * 1000
    const idleTx = rows.find((row) => row.name === 'idle_in_transaction_session_timeout')
    const shown = rows.map((row) => `${row.name}=${row.valueMs ? formatDuration(row.valueMs / 1000) : 'off'}`).join(', ')
    let status: Severity = 'ok'
    let problem = ''
    if (!idleTx || idleTx.valueMs === 0) {
      status = 'warn'
      problem =
        "idle_in_transaction_session_timeout is off: a transaction held across an LLM call is never ended by the server (e.g. ALTER DATABASE … SET idle_in_transaction_session_timeout = '30s')"
    } else if (idleTx.valueMs > poolWaitMs) {
      status = 'warn'
      problem = `idle_in_transaction_session_timeout (${formatDuration(idleTx.valueMs / 1000)}) is longer than the app pool's wait (${formatDuration(poolWaitMs / 1000)}): the pool times out before the server frees the connection`
    }
    return { status, message: problem ? `${problem}; ${shown}` : `timeouts in force: ${shown}`, evidence: rows }
  },
}
