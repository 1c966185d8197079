import type { TargetConfig } from '../core/config.js'
import { mapLimit, TARGET_CONCURRENCY } from '../core/concurrency.js'
import { redactUrl } from '../core/urls.js'
import type { Database } from '../db/database.js'
import { resolveSessionTable } from '../db/session-table.js'
import { summarizeSessions } from '../sessions/inspect.js'

export interface TableState {
  name: string
  table: string
  orphanAfterSeconds: number
  /** the mapping checked against the catalog */
  mapping: { ok: true } | { ok: false; error: string }
  open: number | null
  orphaned: number | null
}

export interface TargetState {
  name: string
  /** the URL with its password masked */
  database: string
  reachable: boolean
  error?: string
  latencyMs?: number
  tables: TableState[]
}

/** Each target: can Warden reach it, does each mapping match its table, and how many sessions are open and orphaned. */
export function inspectTargets(targets: readonly TargetConfig[], open: (target: TargetConfig) => Database): Promise<TargetState[]> {
  return mapLimit(targets, TARGET_CONCURRENCY, async (target) => {
    const db = open(target)
    const base = { name: target.name, database: redactUrl(target.database.url) }
    const unknown = (error?: string): TableState[] =>
      target.sessions.map((table) => ({
        name: table.name,
        table: table.table,
        orphanAfterSeconds: table.orphanAfter,
        mapping: error ? { ok: false, error } : { ok: true },
        open: null,
        orphaned: null,
      }))
    try {
      const started = performance.now()
      try {
        await db.ping()
      } catch (error) {
        return { ...base, reachable: false, error: (error as Error).message, tables: unknown() }
      }
      const latencyMs = Math.round((performance.now() - started) * 10) / 10
      const tables: TableState[] = []
      for (const config of target.sessions) {
        const entry = { name: config.name, table: config.table, orphanAfterSeconds: config.orphanAfter }
        try {
          const table = await resolveSessionTable(db, config, target.name)
          const count = async (silentForSeconds?: number) =>
            (await summarizeSessions(db, table, { open: true, silentForSeconds })).reduce((sum, g) => sum + g.count, 0)
          tables.push({ ...entry, mapping: { ok: true }, open: await count(), orphaned: await count(config.orphanAfter) })
        } catch (error) {
          tables.push({ ...entry, mapping: { ok: false, error: (error as Error).message }, open: null, orphaned: null })
        }
      }
      return { ...base, reachable: true, latencyMs, tables }
    } finally {
      await db.close().catch(() => undefined)
    }
  })
}
