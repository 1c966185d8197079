import type { Database, Queryable } from '../db/database.js'
import { dailyStats, listSessions, olderOpenStats, summarize, type SessionFilter, type SessionOrder } from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'

export interface SessionRow {
  id: string
  group: string
  open: boolean
  startedAt: Date
  lastSeenAt: Date
  endedAt: Date | null
  ageSeconds: number
  silentSeconds: number
}

export async function listSessionRows(
  db: Database,
  table: SessionTable,
  filter: SessionFilter,
  limit: number,
  order: SessionOrder,
  on?: Queryable,
): Promise<SessionRow[]> {
  return db.rows<SessionRow>(listSessions(table, filter, limit, order), on)
}

export interface GroupSummary {
  group: string
  count: number
  oldestSilentSeconds: number
  oldestAgeSeconds: number
}

export async function summarizeSessions(db: Database, table: SessionTable, filter: SessionFilter): Promise<GroupSummary[]> {
  const rows = await db.rows<{ group: string; count: string; oldestSilentSeconds: number; oldestAgeSeconds: number }>(
    summarize(table, filter),
  )
  return rows.map((row) => ({ ...row, count: Number(row.count) }))
}

export interface DailyStatsRow {
  day: string
  group: string
  total: number
  avgDurationSeconds: number | null
  stillActive: number
  orphaned: number
}

/** Per day of the window, newest first, then one "older" row per group for sessions started before it and still open. */
export async function sessionDailyStats(db: Database, table: SessionTable, days: number, byGroup: boolean): Promise<DailyStatsRow[]> {
  type Raw = { day: string; group: string; total: string; avgDurationSeconds: number | null; stillActive: string; orphaned: string }
  const options = { days, byGroup, orphanAfterSeconds: table.config.orphanAfter }
  const rows = [...(await db.rows<Raw>(dailyStats(table, options))), ...(await db.rows<Raw>(olderOpenStats(table, options)))]
  return rows.map((row) => ({ ...row, total: Number(row.total), stillActive: Number(row.stillActive), orphaned: Number(row.orphaned) }))
}
