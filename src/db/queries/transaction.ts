import { sql } from '../sql.js'

/** For read-only probes: no accidental writes, and a deadline that ends with the transaction. */
export const readOnlyTransaction = () => sql('tx.readOnly', 'SET TRANSACTION READ ONLY')
export const localStatementTimeout = (ms: number) =>
  sql('tx.statementTimeout', `SELECT set_config('statement_timeout', $1, true)`, [`${Math.max(1, Math.round(ms))}ms`])
