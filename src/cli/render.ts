import { formatDuration } from '../core/duration.js'
import type { DailyStatsRow } from '../sessions/inspect.js'

export interface Column<Row> {
  header: string
  value: (row: Row) => string | number | null | undefined
  align?: 'left' | 'right'
}

/** A plain-text table that reads in an 80-column terminal and pipes cleanly into grep/awk. */
export function table<Row>(rows: Row[], columns: Column<Row>[]): string {
  const cells = rows.map((row) => columns.map((column) => String(column.value(row) ?? '-')))
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((r) => r[i]!.length)))
  const line = (values: string[]) =>
    values
      .map((value, i) => (columns[i]!.align === 'right' ? value.padStart(widths[i]!) : value.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n')
}

export const age = (seconds: number | null | undefined) => formatDuration(seconds)

export const timestamp = (value: Date | string | null | undefined): string => {
  if (value === null || value === undefined) return '-'
  const date = value instanceof Date ? value : new Date(value)
  return Number.isNaN(date.getTime())
    ? String(value)
    : date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
}

export function byGroupLine(byGroup: Record<string, number>): string {
  const entries = Object.entries(byGroup).sort((a, b) => b[1] - a[1])
  return entries.length ? entries.map(([group, n]) => `${group}=${n}`).join(', ') : 'none'
}

/** `sessions stats` and the demo show the same per-day table. */
export function renderDailyStats(rows: DailyStatsRow[], byGroup: boolean): string {
  return table(rows, [
    { header: 'day', value: (r) => (r.day === 'older' ? 'older, still open' : r.day) },
    ...(byGroup ? [{ header: 'group', value: (r: DailyStatsRow) => r.group }] : []),
    { header: 'sessions', value: (r) => r.total, align: 'right' },
    { header: 'avg duration', value: (r) => age(r.avgDurationSeconds), align: 'right' },
    { header: 'still active', value: (r) => r.stillActive, align: 'right' },
    { header: 'orphaned', value: (r) => r.orphaned, align: 'right' },
  ])
}
