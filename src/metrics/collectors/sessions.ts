import { Gauge } from 'prom-client'
import { summarize } from '../../db/queries/sessions.js'
import type { SessionTable } from '../../db/session-table.js'
import { PartialResult, type CollectorFactory } from '../collector.js'
import { keptLabels, labelValue } from '../labels.js'
import { TargetSeries } from '../series.js'

interface SummaryRow {
  group: string
  count: string
  oldestSilentSeconds: number
  oldestAgeSeconds: number
}

interface TableSnapshot {
  table: string
  open: SummaryRow[]
  orphaned: SummaryRow[]
}

/**
 * Open and orphaned sessions of every mapped table of the target, by group: the websocket
 * post-mortem's "18 of 85 sessions active for up to 444 h" as three gauges. The statements are
 * the same builders `sessions list`, `sweep` and doctor use, so the numbers agree with them. A
 * group Warden has seen reads 0 once its sessions are all closed, rather than vanishing: a
 * missing series and a zero mean different things to an alert.
 */
export const sessionsCollector: CollectorFactory = ({ registry }) => {
  const registers = [registry]
  const labelNames = ['target', 'table', 'group'] as const
  const active = new Gauge({
    name: 'warden_sessions_active',
    help: 'Open sessions of each mapped session table, by group.',
    labelNames,
    registers,
  })
  const orphaned = new Gauge({
    name: 'warden_sessions_orphaned',
    help: "Open sessions silent (last seen, else started) for longer than the table's orphanAfter, by group.",
    labelNames,
    registers,
  })
  const oldestAge = new Gauge({
    name: 'warden_sessions_oldest_active_age_seconds',
    help: 'Age (now - startedAt) of the oldest open session, by group, when last collected.',
    labelNames,
    registers,
  })
  const series = { active: new TargetSeries(active), orphaned: new TargetSeries(orphaned), oldest: new TargetSeries(oldestAge) }
  /** target → table → groups ever seen */
  const seen = new Map<string, Map<string, Set<string>>>()

  return {
    name: 'sessions',
    async collect(ctx) {
      const tables = await ctx.tables()
      const usable = tables.filter((table): table is SessionTable => !(table instanceof Error))
      if (usable.length === 0 && tables[0] instanceof Error) throw tables[0]
      const snapshots = await ctx.readOnly(async (client) => {
        const out: TableSnapshot[] = []
        for (const table of usable) {
          out.push({
            table: table.label,
            open: await ctx.db.rows<SummaryRow>(summarize(table, { open: true }), client),
            orphaned: await ctx.db.rows<SummaryRow>(summarize(table, { open: true, silentForSeconds: table.config.orphanAfter }), client),
          })
        }
        return out
      })
      const broken = tables.find((table): table is Error => table instanceof Error)
      // the tables that work still report; one that does not fails the collector, visibly
      if (broken) throw new PartialResult(broken.message, snapshots)
      return snapshots
    },
    update(snapshots: TableSnapshot[], target) {
      const tablesSeen = seen.get(target) ?? new Map<string, Set<string>>()
      seen.set(target, tablesSeen)
      const entries = { active: [] as Entry[], orphaned: [] as Entry[], oldest: [] as Entry[] }
      for (const { table, open, orphaned: orphans } of snapshots) {
        const label = keptLabels(open.map((row) => ({ label: labelValue(row.group), count: Number(row.count) })))
        const counts = new Map<string, { active: number; orphaned: number; oldest: number }>()
        const groups = tablesSeen.get(table) ?? new Set<string>()
        tablesSeen.set(table, groups)
        for (const group of groups) counts.set(group, { active: 0, orphaned: 0, oldest: 0 })
        for (const row of open) {
          const group = label(labelValue(row.group))
          const entry = counts.get(group) ?? { active: 0, orphaned: 0, oldest: 0 }
          entry.active += Number(row.count)
          entry.oldest = Math.max(entry.oldest, row.oldestAgeSeconds)
          counts.set(group, entry)
          groups.add(group)
        }
        for (const row of orphans) {
          const entry = counts.get(label(labelValue(row.group)))
          // an orphan is an open session, so its group is there (unless it closed between the two statements)
          if (entry) entry.orphaned += Number(row.count)
        }
        for (const [group, entry] of counts) {
          const labels = { target, table, group }
          entries.active.push({ labels, value: entry.active })
          entries.orphaned.push({ labels, value: entry.orphaned })
          entries.oldest.push({ labels, value: Math.max(0, entry.oldest) })
        }
      }
      series.active.replace(target, entries.active)
      series.orphaned.replace(target, entries.orphaned)
      series.oldest.replace(target, entries.oldest)
    },
  }
}

type Entry = { labels: { target: string; table: string; group: string }; value: number }
