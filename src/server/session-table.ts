import type { SessionsConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import { resolveSessionTable, type SessionTable } from '../db/session-table.js'

export type SessionTableResolver = () => Promise<SessionTable>

/**
 * The service may start before its database is reachable: the mapping is checked against the
 * catalog on first use, cached once it resolves, and retried on the next call after a failure.
 * Concurrent callers share one resolution.
 */
export function sessionTableResolver(db: Database, config: SessionsConfig): SessionTableResolver {
  let resolved: SessionTable | undefined
  let pending: Promise<SessionTable> | undefined
  return () => {
    if (resolved) return Promise.resolve(resolved)
    pending ??= resolveSessionTable(db, config).then(
      (table) => (resolved = table),
      (error: unknown) => {
        pending = undefined
        throw error
      },
    )
    return pending
  }
}
