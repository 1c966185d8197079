import { ExitCode, sqlstateOf, WardenError } from '../core/errors.js'
import type { Database } from './database.js'
import { tableLockHolders } from './queries/catalog.js'

/**
 * lock_timeout (55P03) on a table means another session holds the table itself: say who, instead
 * of PostgreSQL's bare "canceling statement due to lock timeout". Any other error is returned as is.
 */
export async function explainTableLock(db: Database, table: { oid: string; name: string }, error: unknown): Promise<unknown> {
  if (sqlstateOf(error) !== '55P03' || (error instanceof WardenError && error.message.startsWith('table '))) return error
  const holders = await db
    .rows<{ pid: number; applicationName: string; mode: string; state: string | null }>(tableLockHolders(table.oid))
    .catch(() => [])
  const who = holders.length
    ? holders
        .map((h) => `pid ${h.pid} (${h.applicationName || 'no application_name'}, ${h.mode}${h.state ? `, ${h.state}` : ''})`)
        .join(', ')
    : 'another session (it let go before Warden could see who)'
  return new WardenError(
    `table ${table.name} is locked by ${who}, and the lock was not free within lock_timeout ${db.lockTimeoutMs}ms; nothing was changed after that, try again when it is released`,
    ExitCode.locked,
    'a DDL statement, VACUUM FULL or an explicit LOCK TABLE holds it; pg_stat_activity shows what that session is doing (raise database.lockTimeout to wait longer)',
    '55P03',
  )
}
