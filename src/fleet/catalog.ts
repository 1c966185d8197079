import type { TableConfig } from '../core/config.js'
import { sqlstateOf } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { resolveSessionTable, type SessionTable } from '../db/session-table.js'

/** undefined_column, undefined_table, wrong type: the table changed under a running process. */
const MAPPING_DRIFT = new Set(['42703', '42P01', '42804', '42883'])

export interface CatalogEntry {
  db: Database
  table: TableConfig
}

/**
 * The one cache of catalog-checked session tables, keyed by target and table. A process may
 * start before a database is reachable: a mapping is checked on first use, cached once it
 * resolves, and retried on the next call after a failure; concurrent callers share one check.
 */
export class TableCatalog {
  private readonly resolved = new Map<string, SessionTable>()
  private readonly pending = new Map<string, Promise<SessionTable>>()

  constructor(private readonly lookup: (target: string, table: string) => CatalogEntry) {}

  get(target: string, table: string): Promise<SessionTable> {
    const key = `${target}\u0000${table}`
    const known = this.resolved.get(key)
    if (known) return Promise.resolve(known)
    let pending = this.pending.get(key)
    if (!pending) {
      const entry = this.lookup(target, table)
      pending = resolveSessionTable(entry.db, entry.table, target).then(
        (resolved) => {
          this.resolved.set(key, resolved)
          this.pending.delete(key)
          return resolved
        },
        (error: unknown) => {
          this.pending.delete(key)
          throw error
        },
      )
      this.pending.set(key, pending)
    }
    return pending
  }

  /** Forget a table: the next get() checks the catalog again. */
  invalidate(target: string, table: string): void {
    const key = `${target}\u0000${table}`
    this.resolved.delete(key)
    this.pending.delete(key)
  }

  /**
   * Runs work against a table. When the table changed under the process (a column renamed or
   * dropped), the mapping is checked against the catalog again, so the caller gets the message
   * start-up would give ("sessions.columns.lastSeenAt = …: no column …"), not a bare database
   * error; if the table matches again, the work is retried once.
   */
  async using<T>(target: string, table: string, work: (resolved: SessionTable) => Promise<T>): Promise<T> {
    try {
      return await work(await this.get(target, table))
    } catch (error) {
      const state = sqlstateOf(error)
      if (state === undefined || !MAPPING_DRIFT.has(state)) throw error
      this.invalidate(target, table)
      return work(await this.get(target, table))
    }
  }
}
