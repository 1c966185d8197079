import { expect } from 'vitest'
import type { TestDatabase } from './db.js'

/**
 * The invariants every mutation of a session table must keep, checked by SQL the test writes
 * itself (never by Warden's own report):
 * - no session that showed activity after the cutoff is closed;
 * - no row that was already closed changes;
 * - a row Warden closed has the active flag, every end column and the duration set together;
 * - the audit rows of the mutation count exactly the rows that changed.
 * Rows are compared as whole-row text, so a table without any key (duplicate or NULL ids) is
 * checked just as well.
 */
export interface TableShape {
  /** [schema.]table, as SQL (quote mixed-case names yourself) */
  table: string
  /** column names as SQL */
  active?: string
  endedAt: readonly string[]
  durationSeconds?: string
  startedAt: string
  lastSeenAt?: string
  /**
   * The silence moment as an instant (timestamptz SQL), when the columns need a zone to mean one,
   * e.g. `(last_seen AT TIME ZONE 'America/New_York')`. Default: COALESCE(lastSeenAt, startedAt).
   */
  silenceInstant?: string
  wardenSchema?: string
}

interface RowState {
  text: string
  open: boolean
  /** epoch seconds of the last sign of life */
  seen: number | null
  endsSet: boolean
  durationSet: boolean
}

export interface TableSnapshot {
  shape: TableShape
  rows: RowState[]
  /** highest audit id when taken */
  auditId: number
  /** the server's clock when taken, epoch seconds */
  at: number
}

const openSql = (s: TableShape) => (s.active ? `COALESCE(${s.active}, false)` : `${s.endedAt[0]} IS NULL`)
const silenceSql = (s: TableShape) =>
  s.silenceInstant ?? (s.lastSeenAt ? `COALESCE(${s.lastSeenAt}, ${s.startedAt})::timestamptz` : `${s.startedAt}::timestamptz`)

export async function snapshotTable(t: TestDatabase, shape: TableShape): Promise<TableSnapshot> {
  const schema = shape.wardenSchema ?? 'warden'
  const ends = shape.endedAt.map((column) => `${column} IS NOT NULL`).join(' AND ')
  const { rows } = await t.exec(
    `SELECT row_to_json(x)::text AS text, ${openSql(shape)} AS open,
            EXTRACT(EPOCH FROM ${silenceSql(shape)})::float8 AS seen,
            (${ends || 'true'}) AS "endsSet",
            ${shape.durationSeconds ? `${shape.durationSeconds} IS NOT NULL` : 'true'} AS "durationSet"
       FROM ${shape.table} x`,
  )
  const audit = await t.exec(`SELECT to_regclass('${schema}.audit_log') IS NOT NULL AS ok`)
  const auditId = audit.rows[0].ok ? (await t.exec(`SELECT COALESCE(max(id), 0)::int AS id FROM ${schema}.audit_log`)).rows[0].id : 0
  const at = (await t.exec(`SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS at`)).rows[0].at
  return { shape, rows: rows as RowState[], auditId, at }
}

/** Multiset difference by whole-row text. */
function minus(a: RowState[], b: RowState[]): RowState[] {
  const counts = new Map<string, number>()
  for (const row of b) counts.set(row.text, (counts.get(row.text) ?? 0) + 1)
  const out: RowState[] = []
  for (const row of a) {
    const n = counts.get(row.text) ?? 0
    if (n > 0) counts.set(row.text, n - 1)
    else out.push(row)
  }
  return out
}

export interface MutationExpectations {
  /**
   * Rows whose last sign of life is at or after this instant (epoch seconds) must not be closed:
   * for a sweep, (moment before the run) - orphanAfter. Omit for a bulk close.
   */
  activeAfter?: number
  /** how many rows the mutation should have closed, when the test knows it independently */
  closed?: number
}

export interface MutationOutcome {
  /** rows that changed (old versions) */
  changed: number
  /** sum of rows_affected of the audit rows written since the snapshot */
  audited: number
}

/** Asserts every invariant between a snapshot taken before a mutation and the table now. */
export async function expectInvariants(
  t: TestDatabase,
  before: TableSnapshot,
  expected: MutationExpectations = {},
): Promise<MutationOutcome> {
  const after = await snapshotTable(t, before.shape)
  expect(after.rows.length, 'a close never inserts or deletes rows').toBe(before.rows.length)
  const removed = minus(before.rows, after.rows)
  const added = minus(after.rows, before.rows)
  const show = (rows: RowState[]) => rows.map((row) => row.text).join('\n')

  const closedBefore = removed.filter((row) => !row.open)
  expect(closedBefore, `already-closed rows changed:\n${show(closedBefore)}`).toEqual([])

  if (expected.activeAfter !== undefined) {
    const live = removed.filter((row) => row.seen !== null && row.seen >= expected.activeAfter!)
    expect(live, `sessions active after the cutoff were closed:\n${show(live)}`).toEqual([])
  }

  const halfClosed = added.filter((row) => row.open || !row.endsSet || !row.durationSet)
  expect(halfClosed, `rows changed but not fully closed (flag, every end column, duration):\n${show(halfClosed)}`).toEqual([])

  const schema = before.shape.wardenSchema ?? 'warden'
  // the audit rows of this table only: other tables of the database may be swept meanwhile
  const target = before.shape.table.includes('.') ? before.shape.table : `public.${before.shape.table}`
  const { rows } = await t.exec(`SELECT COALESCE(sum(rows_affected), 0)::int AS n FROM ${schema}.audit_log WHERE id > $1 AND target = $2`, [
    before.auditId,
    target.replace(/"/g, ''),
  ])
  const audited = rows[0].n as number
  expect(audited, 'the audit rows count exactly the rows that changed').toBe(removed.length)
  if (expected.closed !== undefined) expect(removed.length, 'rows closed').toBe(expected.closed)
  return { changed: removed.length, audited }
}
