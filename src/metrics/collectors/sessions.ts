import { Gauge } from 'prom-client'
import { summarize } from '../../db/queries/sessions.js'
import type { CollectorFactory } from '../collector.js'
import { keptLabels, labelValue } from '../labels.js'

interface SummaryRow {
  group: string
  count: string
  oldestSilentSeconds: number
  oldestAgeSeconds: number
}

interface SessionsSnapshot {
  open: SummaryRow[]
  orphaned: SummaryRow[]
}

/**
 * Open and orphaned sessions of the mapped table, by group: the websocket post-mortem's
 * "18 of 85 sessions active for up to 444 h" as three gauges. The statements are the same
 * builders `sessions list`, `sweep` and doctor use, so the numbers agree with them.
 */
export const sessionsCollector: CollectorFactory = ({ registry }) => {
  const registers = [registry]
  const active = new Gauge({
    name: 'warden_sessions_active',
    help: 'Open sessions of the mapped session table, by group.',
    labelNames: ['group'],
    registers,
  })
  const orphaned = new Gauge({
    name: 'warden_sessions_orphaned',
    help: 'Open sessions silent (last seen, else started) for longer than sessions.orphanAfter, by group.',
    labelNames: ['group'],
    registers,
  })
  const oldestAge = new Gauge({
    name: 'warden_sessions_oldest_active_age_seconds',
    help: 'Age (now - startedAt) of the oldest open session, by group, when last collected.',
    labelNames: ['group'],
    registers,
  })

  return {
    name: 'sessions',
    async collect(ctx) {
      const table = await ctx.sessionTable()
      return ctx.readOnly(async (client) => ({
        open: await ctx.db.rows<SummaryRow>(summarize(table, { open: true }), client),
        orphaned: await ctx.db.rows<SummaryRow>(summarize(table, { open: true, silentForSeconds: table.config.orphanAfter }), client),
      }))
    },
    update({ open, orphaned: orphans }: SessionsSnapshot) {
      const label = keptLabels(open.map((row) => ({ label: labelValue(row.group), count: Number(row.count) })))
      const counts = new Map<string, { active: number; orphaned: number; oldest: number }>()
      for (const row of open) {
        const group = label(labelValue(row.group))
        const entry = counts.get(group) ?? { active: 0, orphaned: 0, oldest: 0 }
        entry.active += Number(row.count)
        entry.oldest = Math.max(entry.oldest, row.oldestAgeSeconds)
        counts.set(group, entry)
      }
      for (const row of orphans) {
        const entry = counts.get(label(labelValue(row.group)))
        // an orphan is an open session, so its group is there (unless it closed between the two statements)
        if (entry) entry.orphaned += Number(row.count)
      }
      active.reset()
      orphaned.reset()
      oldestAge.reset()
      for (const [group, entry] of counts) {
        active.set({ group }, entry.active)
        orphaned.set({ group }, entry.orphaned)
        oldestAge.set({ group }, Math.max(0, entry.oldest))
      }
    },
  }
}
