import { formatDuration } from '../core/duration.js'
import { summarize } from '../db/queries/sessions.js'
import { grade, requireSessions, type Check } from './types.js'

interface Row {
  group: string
  count: string
  oldestSilentSeconds: number
}

/** The websocket post-mortem's alert: open sessions that stopped talking long ago (18 of 85, up to 444 h). */
export const orphanedSessions: Check<Row> = {
  name: 'orphaned-sessions',
  scope: 'table',
  help: 'Open sessions silent for longer than sessions.orphanAfter: a disconnect or shutdown path that never closes its row.',
  sql: (ctx) => summarize(requireSessions(ctx), { open: true, silentForSeconds: requireSessions(ctx).config.orphanAfter }),
  evaluate(rows, ctx) {
    const total = rows.reduce((sum, row) => sum + Number(row.count), 0)
    const evidence = rows.map((row) => ({
      group: row.group,
      orphans: Number(row.count),
      oldestSilentSeconds: Math.round(row.oldestSilentSeconds),
    }))
    if (total === 0)
      return { status: 'ok', message: `no open session silent for more than ${formatDuration(requireSessions(ctx).config.orphanAfter)}` }
    const oldest = Math.max(...rows.map((row) => row.oldestSilentSeconds))
    return {
      status: grade(total, ctx.checks.orphanedSessions),
      message: `${total} orphaned session(s) silent for more than ${formatDuration(requireSessions(ctx).config.orphanAfter)}, the oldest for ${formatDuration(oldest)}; close them with \`warden sessions sweep --apply\``,
      evidence,
    }
  },
}
