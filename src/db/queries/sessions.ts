import type { SessionTable } from '../session-table.js'
import { sql, type Sql } from '../sql.js'

/**
 * Which sessions a statement is about. Every field narrows; an empty filter means every row,
 * which is why the close command insists on --all before it builds one.
 */
export interface SessionFilter {
  /** true: open sessions only; false: closed only */
  open?: boolean
  /** silent (lastSeenAt, else startedAt) since before this instant (timestamptz text, microseconds kept): the orphan test */
  silentBefore?: string
  /** silent for longer than this many seconds, measured by the server's clock at statement time */
  silentForSeconds?: number
  startedBeforeSeconds?: number
  startedWithinSeconds?: number
  groups?: string[]
  ids?: string[]
}

const NO_GROUP_LABEL = '(none)'
/** Group label when no group column is mapped: one bucket, still a valid Prometheus label value. */
export const ALL_GROUPS = 'all'

/**
 * The bare column, not `IS TRUE`: only this form matches a partial index `WHERE is_active`,
 * the index the orphan queries need (a NULL flag counts as closed either way).
 */
export const openPredicate = (t: SessionTable): string => (t.active ? t.active : `${t.endedAt[0]} IS NULL`)

/**
 * Groups are user data, and Warden has labels of its own: "(none)" for NULL or empty, and
 * "(other)" for the overflow bucket of the metrics. A real group spelled like one of those,
 * "(…)", is shown in double quotes, so it never merges with Warden's own buckets — everywhere
 * (filters, API, metrics), because every reader goes through this expression.
 */
export const groupExpr = (t: SessionTable): string => {
  if (!t.group) return `'${ALL_GROUPS}'`
  const g = `${t.group}::text`
  return `(CASE WHEN ${g} IS NULL OR ${g} = '' THEN '${NO_GROUP_LABEL}' WHEN ${g} LIKE '(%)' THEN '"' || ${g} || '"' ELSE ${g} END)`
}

const naive = (t: SessionTable, column: string) => t.naiveColumns.has(column)

/** A naive (timestamp without time zone) expression as an instant: in the declared zone, else the session's. */
const asInstant = (t: SessionTable, expression: string) =>
  t.zone ? `(${expression} AT TIME ZONE ${t.zone})` : `(${expression})::timestamptz`

/** A timestamp column as an instant (timestamptz), whatever its type: what Warden shows and measures ages with. */
export const instantOf = (t: SessionTable, column: string): string => (naive(t, column) ? asInstant(t, column) : column)

/** An instant (timestamptz SQL) as a value for this column: naive columns get the wall-clock time of their zone. */
const valueFor = (t: SessionTable, column: string, instant: string): string =>
  naive(t, column) ? (t.zone ? `((${instant}) AT TIME ZONE ${t.zone})` : `(${instant})::timestamp`) : instant

interface Moment {
  /** in the columns' own type: what indexes are built on */
  raw: string
  naive: boolean
}

/** The last sign of life: lastSeenAt, else startedAt. */
function silenceMoment(t: SessionTable): Moment {
  if (!t.lastSeenAt) return { raw: t.startedAt, naive: naive(t, t.startedAt) }
  if (naive(t, t.lastSeenAt) === naive(t, t.startedAt))
    return { raw: `COALESCE(${t.lastSeenAt}, ${t.startedAt})`, naive: naive(t, t.startedAt) }
  return { raw: `COALESCE(${instantOf(t, t.lastSeenAt)}, ${instantOf(t, t.startedAt)})`, naive: false }
}

const startMoment = (t: SessionTable): Moment => ({ raw: t.startedAt, naive: naive(t, t.startedAt) })
const instant = (t: SessionTable, m: Moment) => (m.naive ? asInstant(t, m.raw) : m.raw)

/**
 * `moment < instant`, written so an index on the moment's own expression still serves it: a naive
 * column is compared with the instant turned into the column's wall-clock time, not the reverse.
 * Without a declared zone PostgreSQL's own timestamp/timestamptz comparison does the same.
 */
const compare = (t: SessionTable, m: Moment, op: '<' | '>=', instantSql: string) =>
  m.naive && t.zone ? `${m.raw} ${op} ((${instantSql}) AT TIME ZONE ${t.zone})` : `${m.raw} ${op} ${instantSql}`

export const lastSeenExpr = (t: SessionTable): string => instant(t, silenceMoment(t))

/** Seconds a closed session lasted, from the duration column if mapped, else from its timestamps. */
const durationExpr = (t: SessionTable): string =>
  t.durationSeconds
    ? `${t.durationSeconds}::float8`
    : t.endedAt[0]
      ? `EXTRACT(EPOCH FROM (${instantOf(t, t.endedAt[0])} - ${instantOf(t, t.startedAt)}))::float8`
      : 'NULL::float8'

/** Appends the filter's conditions, binding every value; returns SQL that is safe to splice. */
export function whereClause(t: SessionTable, filter: SessionFilter, values: unknown[]): string {
  const bind = (value: unknown) => `$${values.push(value)}`
  const ago = (seconds: number) => `now() - make_interval(secs => ${bind(seconds)})`
  const conditions: string[] = []
  if (filter.open === true) conditions.push(openPredicate(t))
  if (filter.open === false) conditions.push(`(${openPredicate(t)}) IS NOT TRUE`)
  if (filter.silentBefore) conditions.push(compare(t, silenceMoment(t), '<', `${bind(filter.silentBefore)}::timestamptz`))
  if (filter.silentForSeconds !== undefined) conditions.push(compare(t, silenceMoment(t), '<', ago(filter.silentForSeconds)))
  if (filter.startedBeforeSeconds !== undefined) conditions.push(compare(t, startMoment(t), '<', ago(filter.startedBeforeSeconds)))
  if (filter.startedWithinSeconds !== undefined) conditions.push(compare(t, startMoment(t), '>=', ago(filter.startedWithinSeconds)))
  if (filter.groups?.length) conditions.push(`${groupExpr(t)} = ANY(${bind(filter.groups)}::text[])`)
  // The id parameter takes the column's own type (uuid, bigint, text…), so the index is usable.
  if (filter.ids?.length) conditions.push(`${t.id} = ANY(${bind(filter.ids)})`)
  return conditions.length ? conditions.join(' AND ') : 'TRUE'
}

/** Count, by group, of the sessions a filter matches, with the oldest silence and age among them. */
export function summarize(t: SessionTable, filter: SessionFilter): Sql {
  const values: unknown[] = []
  const where = whereClause(t, filter, values)
  return sql(
    'sessions.summarize',
    `SELECT ${groupExpr(t)} AS "group",
            count(*)::int8 AS count,
            EXTRACT(EPOCH FROM (now() - min(${lastSeenExpr(t)})))::float8 AS "oldestSilentSeconds",
            EXTRACT(EPOCH FROM (now() - min(${instantOf(t, t.startedAt)})))::float8 AS "oldestAgeSeconds"
       FROM ${t.table}
      WHERE ${where}
      GROUP BY 1
      ORDER BY 2 DESC, 1`,
    values,
  )
}

export type SessionOrder = 'silent' | 'newest'

/** Timestamps leave as timestamptz (instants), so no client reads a naive value in its own zone. */
export function listSessions(t: SessionTable, filter: SessionFilter, limit: number, order: SessionOrder): Sql {
  const values: unknown[] = []
  const where = whereClause(t, filter, values)
  // id breaks ties, so pages of the API do not skip or repeat sessions that share a timestamp
  const orderBy = order === 'silent' ? `${lastSeenExpr(t)} ASC, ${t.id}` : `${instantOf(t, t.startedAt)} DESC, ${t.id}`
  return sql(
    'sessions.list',
    `SELECT ${t.id}::text AS id,
            ${groupExpr(t)} AS "group",
            COALESCE(${openPredicate(t)}, false) AS open,
            ${instantOf(t, t.startedAt)} AS "startedAt",
            ${lastSeenExpr(t)} AS "lastSeenAt",
            ${t.endedAt[0] ? instantOf(t, t.endedAt[0]) : 'NULL::timestamptz'} AS "endedAt",
            EXTRACT(EPOCH FROM (now() - ${instantOf(t, t.startedAt)}))::float8 AS "ageSeconds",
            EXTRACT(EPOCH FROM (now() - ${lastSeenExpr(t)}))::float8 AS "silentSeconds"
       FROM ${t.table}
      WHERE ${where}
      ORDER BY ${orderBy}
      LIMIT ${`$${values.push(limit)}`}`,
    values,
  )
}

/**
 * The server's clock decides ages: one cutoff for a whole sweep, so every batch judges alike. As
 * text, so the microseconds survive the round trip (a JavaScript Date keeps milliseconds).
 */
export const cutoffFromNow = (seconds: number) =>
  sql('sessions.cutoff', `SELECT (now() - make_interval(secs => $1))::text AS cutoff`, [seconds])

/**
 * The newest sign of life among open sessions, against the server's clock: a writer whose naive
 * timestamps are in another zone shows as a whole-hour silence, or as values in the future.
 */
export function clockSkew(t: SessionTable): Sql {
  return sql(
    'sessions.clockSkew',
    `SELECT EXTRACT(EPOCH FROM (now() - max(${lastSeenExpr(t)})))::float8 AS "newestSilenceSeconds", count(*)::int8 AS open
       FROM ${t.table}
      WHERE ${openPredicate(t)}`,
  )
}

/**
 * How a close walks the table: the orphan index in silence order for sweeps (one pass over the
 * orphans only), the id when it alone names a row, else no cursor at all (each batch starts
 * over; correct, only slower, since every batch closes what it picks).
 */
export type WalkOrder = 'silence' | 'id' | 'none'

export function walkOrder(t: SessionTable, filter: SessionFilter): WalkOrder {
  if (filter.silentBefore !== undefined && t.silenceIndexed) return 'silence'
  if (t.idUnique && t.idNotNull) return 'id'
  return 'none'
}

export interface CloseBatchOptions {
  order: WalkOrder
  /** where the previous batch ended (text of the walk key), undefined for the first */
  cursor?: string
  batchSize: number
  closeTimestamp: 'now' | 'lastSeen'
  auditTable: string
  auditId: string
  /** rows a run set aside (poison rows), as `tableoid:ctid` */
  skip: string[]
}

/** A row's physical identity: ctid is unique only within one relation, so partitions add tableoid. */
const rowKey = `(tableoid::int8::text || ':' || ctid::text)`

/** The SELECT … FOR UPDATE SKIP LOCKED of one batch: shared by the batch and by the poison-row probe. */
function batchRows(t: SessionTable, filter: SessionFilter, options: CloseBatchOptions, values: unknown[], limit: string): string {
  let where = whereClause(t, { ...filter, open: true }, values)
  const silence = silenceMoment(t)
  if (options.cursor !== undefined) {
    // >= and not >: rows sharing the cursor's moment are looked at again; closed ones no longer match
    if (options.order === 'silence')
      where += ` AND ${silence.raw} >= $${values.push(options.cursor)}::${silence.naive ? 'timestamp' : 'timestamptz'}`
    if (options.order === 'id') where += ` AND ${t.id} > $${values.push(options.cursor)}`
  }
  if (options.skip.length) where += ` AND ${rowKey} <> ALL($${values.push(options.skip)}::text[])`
  const orderBy = options.order === 'silence' ? `ORDER BY ${silence.raw}` : options.order === 'id' ? `ORDER BY ${t.id}` : ''
  return `SELECT tableoid AS rel, ctid AS tid, ${rowKey} AS key, ${silence.raw} AS seen, ${t.id} AS id
            FROM ${t.table}
           WHERE ${where}
           ${orderBy}
           LIMIT ${limit}
             FOR UPDATE SKIP LOCKED`
}

/**
 * Closes up to batchSize matching sessions in one statement, so a batch is atomic even under
 * kill -9: each row is either fully closed (active, every endedAt column and the duration) or
 * untouched. SKIP LOCKED leaves rows that a live writer holds for the next run instead of waiting
 * on them, and FOR UPDATE re-checks the filter against the row's latest version, so a session
 * that just showed a sign of life is not closed. The UPDATE then changes exactly the rows the
 * batch locked, by their physical address (ctid, with tableoid for partitions), never by id: an
 * id column that is not unique, or NULL, must not widen a batch to rows it did not select (a live
 * duplicate, or one closed long ago). It re-checks "still open" too, so a closed row is never
 * rewritten. The audit row's count moves in the same statement, so it can never disagree with
 * the table.
 */
export function closeBatch(t: SessionTable, filter: SessionFilter, options: CloseBatchOptions): Sql {
  const values: unknown[] = []
  const rows = batchRows(t, filter, options, values, `$${values.push(options.batchSize)}`)
  const auditId = `$${values.push(options.auditId)}`
  const closedAt = options.closeTimestamp === 'now' ? 'now()' : lastSeenExpr(t)
  const assignments = [
    ...(t.active ? [`${t.active} = false`] : []),
    ...t.endedAt.map((column) => `${column} = ${valueFor(t, column, closedAt)}`),
    ...(t.durationSeconds ? [`${t.durationSeconds} = GREATEST(EXTRACT(EPOCH FROM (${closedAt} - ${instantOf(t, t.startedAt)})), 0)`] : []),
  ]
  const exact = t.partitioned ? ` AND (tableoid, ctid) IN (SELECT rel, tid FROM batch)` : ''
  const cursor =
    options.order === 'silence'
      ? `(SELECT max(seen)::text FROM batch)`
      : options.order === 'id'
        ? `(SELECT id::text FROM batch ORDER BY id DESC LIMIT 1)`
        : 'NULL::text'
  return sql(
    'sessions.closeBatch',
    `WITH batch AS (
       ${rows}
     ), closed AS (
       UPDATE ${t.table}
          SET ${assignments.join(', ')}
        WHERE ctid = ANY (ARRAY(SELECT tid FROM batch))${exact}
          AND ${openPredicate(t)}
       RETURNING ${groupExpr(t)} AS "group"
     ), audited AS (
       UPDATE ${options.auditTable}
          SET rows_affected = rows_affected + (SELECT count(*) FROM closed)
        WHERE id = ${auditId}
     )
     SELECT (SELECT count(*) FROM batch)::int8 AS picked,
            ${cursor} AS cursor,
            COALESCE((SELECT json_object_agg("group", n) FROM (SELECT "group", count(*) AS n FROM closed GROUP BY 1) g), '{}'::json) AS "byGroup"`,
    values,
  )
}

/** The row the next batch would start with, when a batch of one failed: the poison row to set aside. */
export function nextBatchRow(t: SessionTable, filter: SessionFilter, options: CloseBatchOptions): Sql {
  const values: unknown[] = []
  const rows = batchRows(t, filter, options, values, '1')
  return sql('sessions.nextBatchRow', `SELECT key, id::text AS id FROM (${rows}) r`, values)
}

export interface DailyStatsOptions {
  days: number
  byGroup: boolean
  orphanAfterSeconds: number
}

/**
 * Sessions started before the window that are still open, as one more row (day "older"): a
 * 19-day-old orphan must not be invisible to a 7-day report.
 */
export function olderOpenStats(t: SessionTable, options: DailyStatsOptions): Sql {
  const values: unknown[] = [options.days, options.orphanAfterSeconds]
  const group = options.byGroup ? `${groupExpr(t)}` : `'${ALL_GROUPS}'`
  return sql(
    'sessions.olderOpenStats',
    `SELECT 'older' AS day,
            ${group} AS "group",
            count(*)::int8 AS total,
            NULL::float8 AS "avgDurationSeconds",
            count(*)::int8 AS "stillActive",
            (count(*) FILTER (WHERE ${lastSeenExpr(t)} < now() - make_interval(secs => $2)))::int8 AS orphaned
       FROM ${t.table}
      WHERE ${openPredicate(t)}
        AND ${instantOf(t, t.startedAt)} < date_trunc('day', now()) - make_interval(days => $1 - 1)
      GROUP BY 2
      ORDER BY 2`,
    values,
  )
}

/** The post-mortem's daily health query: totals, average duration, still active, and orphans. */
export function dailyStats(t: SessionTable, options: DailyStatsOptions): Sql {
  const values: unknown[] = [options.days, options.orphanAfterSeconds]
  const group = options.byGroup ? `${groupExpr(t)}` : `'${ALL_GROUPS}'`
  return sql(
    'sessions.dailyStats',
    `SELECT to_char(date_trunc('day', ${instantOf(t, t.startedAt)}), 'YYYY-MM-DD') AS day,
            ${group} AS "group",
            count(*)::int8 AS total,
            (avg(${durationExpr(t)}) FILTER (WHERE (${openPredicate(t)}) IS NOT TRUE))::float8 AS "avgDurationSeconds",
            (count(*) FILTER (WHERE ${openPredicate(t)}))::int8 AS "stillActive",
            (count(*) FILTER (WHERE ${openPredicate(t)} AND ${lastSeenExpr(t)} < now() - make_interval(secs => $2)))::int8 AS orphaned
       FROM ${t.table}
      WHERE ${instantOf(t, t.startedAt)} >= date_trunc('day', now()) - make_interval(days => $1 - 1)
      GROUP BY 1, 2
      ORDER BY 1 DESC, 2`,
    values,
  )
}
