import type { SessionsConfig } from '../core/config.js'
import { sqlstateOf } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { resolveSessionTable, type SessionTable } from '../db/session-table.js'

export type SessionTableResolver = (() => Promise<SessionTable>) & {
  /** forget the resolved mapping: the next call checks the catalog again */
  invalidate: () => void
}

/**
 * The service may start before its database is reachable: the mapping is checked against the
 * catalog on first use, cached once it resolves, and retried on the next call after a failure.
 * Concurrent callers share one resolution.
 */
export function sessionTableResolver(db: Database, config: SessionsConfig): SessionTableResolver {
  let resolved: SessionTable | undefined
  let pending: Promise<SessionTable> | undefined
  const resolve = () => {
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
  return Object.assign(resolve, {
    invalidate() {
      resolved = undefined
      pending = undefined
    },
  })
}

/** undefined_column, undefined_table, wrong type: the table changed under a running service. */
const MAPPING_DRIFT = new Set(['42703', '42P01', '42804', '42883'])

/**
 * Runs work against the mapped table. When the table changed under the service (a column renamed
 * or dropped), the mapping is checked against the catalog again, so the caller gets the same
 * message start-up would give ("sessions.columns.lastSeenAt = …: no column …", a 503), not a bare
 * database error; if the table matches again, the work is retried once.
 */
export async function usingSessionTable<T>(resolver: SessionTableResolver, work: (table: SessionTable) => Promise<T>): Promise<T> {
  try {
    return await work(await resolver())
  } catch (error) {
    const state = sqlstateOf(error)
    if (state === undefined || !MAPPING_DRIFT.has(state)) throw error
    resolver.invalidate()
    return work(await resolver())
  }
}
