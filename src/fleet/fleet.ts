import type { TableConfig, TargetConfig, WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import type { SessionTable } from '../db/session-table.js'
import type { SessionHandle } from '../sessions/operations.js'
import { TableCatalog } from './catalog.js'
import { findTarget, selectTable, type Selection, type TableRef } from './targets.js'

export interface TargetRuntime {
  config: TargetConfig
  /** the pool API requests and mutations use */
  db: Database
  /** the collection's own pool: a busy API cannot starve the metrics */
  collectorDb: Database
}

export type OpenDatabase = (target: TargetConfig, role: 'api' | 'collector') => Database

/**
 * What `warden serve` holds for every target: its pools and its catalog-checked tables. Every
 * route, the scheduler and the collectors reach a table through here, by target and table.
 */
export class Fleet {
  readonly targets: TargetRuntime[]
  readonly catalog: TableCatalog
  private readonly byName: Map<string, TargetRuntime>

  constructor(
    readonly config: WardenConfig,
    open: OpenDatabase,
  ) {
    this.targets = config.targets.map((target) => ({ config: target, db: open(target, 'api'), collectorDb: open(target, 'collector') }))
    this.byName = new Map(this.targets.map((target) => [target.config.name, target]))
    this.catalog = new TableCatalog((target, table) => {
      const runtime = this.target(target)
      return { db: runtime.db, table: tableConfig(runtime.config, table) }
    })
  }

  target(name: string): TargetRuntime {
    return this.byName.get(name) ?? this.byName.get(findTarget(this.config, name).name)!
  }

  /** Every table of every target. */
  tables(): TableRef[] {
    return this.config.targets.flatMap((target) => target.sessions.map((table) => ({ target, table })))
  }

  /** A target's tables, resolved through the catalog (or why one is not usable): what its collectors read. */
  resolvedTables(target: string): Promise<Array<SessionTable | Error>> {
    const runtime = this.target(target)
    return Promise.all(
      runtime.config.sessions.map((table) => this.catalog.get(target, table.name).catch((error: unknown) => error as Error)),
    )
  }

  select(selection: Selection): TableRef {
    return selectTable(this.config, selection)
  }

  /**
   * Runs work on one table, catalog-checked; a table that changed under the service is checked
   * again (so the caller sees the mapping error start-up would give) and the work retried once.
   */
  using<T>(ref: TableRef, work: (handle: SessionHandle) => Promise<T>): Promise<T> {
    const runtime = this.target(ref.target.name)
    return this.catalog.using(ref.target.name, ref.table.name, (table) => work({ db: runtime.db, table, config: this.config }))
  }

  async close(): Promise<void> {
    await Promise.all(this.targets.flatMap((t) => [t.db.close().catch(() => undefined), t.collectorDb.close().catch(() => undefined)]))
  }
}

function tableConfig(target: TargetConfig, name: string): TableConfig {
  const table = target.sessions.find((t) => t.name === name)
  if (!table) throw new Error(`target ${target.name} has no table named ${name}`)
  return table
}
