import type { SessionTable } from '../session-table.js'
import { sql, type Sql } from '../sql.js'

/**
 * Which sessions a statement is about. Every field narrows; an empty filter means every row,
 * which is why the close command insists on --all before it builds one.
 */
export interface SessionFilter {
  /** true: open sessions only; false: closed only */
  open?: boolean
  /** silent (lastSeenAt, else startedAt) since before this instant: the orphan test */
  silentBefore?: Date
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
export const lastSeenExpr = (t: SessionTable): string => (t.lastSeenAt ? `COALESCE(${t.lastSeenAt}, ${t.startedAt})` : t.startedAt)
export const groupExpr = (t: SessionTable): string => (t.group ? `COALESCE(${t.group}::text, '${NO_GROUP_LABEL}')` : `'${ALL_GROUPS}'`)

/** Seconds a closed session lasted, from the duration column if mapped, else from its timestamps. */
const durationExpr = (t: SessionTable): string =>
  t.durationSeconds
    ? `${t.durationSeconds}::float8`
    : t.endedAt[0]
      ? `EXTRACT(EPOCH FROM (${t.endedAt[0]} - ${t.startedAt}))::float8`
      : 'NULL::float8'

/** Appends the filter's conditions, binding every value; returns SQL that is safe to splice. */
export function whereClause(t: SessionTable, filter: SessionFilter, values: unknown[]): string {
  const bind = (value: unknown) => `$${values.push(value)}`
  const conditions: string[] = []
  if (filter.open === true) conditions.push(openPredicate(t))
  if (filter.open === false) conditions.push(`(${openPredicate(t)}) IS NOT TRUE`)
  if (filter.silentBefore) conditions.push(`${lastSeenExpr(t)} < ${bind(filter.silentBefore.toISOString())}::timestamptz`)
  if (filter.silentForSeconds !== undefined)
    conditions.push(`${lastSeenExpr(t)} < now() - make_interval(secs => ${bind(filter.silentForSeconds)})`)
  if (filter.startedBeforeSeconds !== undefined)
    conditions.push(`${t.startedAt} < now() - make_interval(secs => ${bind(filter.startedBeforeSeconds)})`)
  if (filter.startedWithinSeconds !== undefined)
    conditions.push(`${t.startedAt} >= now() - make_interval(secs => ${bind(filter.startedWithinSeconds)})`)
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
            EXTRACT(EPOCH FROM (now() - min(${t.startedAt})))::float8 AS "oldestAgeSeconds"
       FROM ${t.table}
      WHERE ${where}
      GROUP BY 1
      ORDER BY 2 DESC, 1`,
    values,
  )
}

export type SessionOrder = 'silent' | 'newest'

export function listSessions(t: SessionTable, filter: SessionFilter, limit: number, order: SessionOrder): Sql {
  const values: unknown[] = []
  const where = whereClause(t, filter, values)
  // id breaks ties, so pages of the API do not skip or repeat sessions that share a timestamp
  const orderBy = order === 'silent' ? `${lastSeenExpr(t)} ASC, ${t.id}` : `${t.startedAt} DESC, ${t.id}`
  return sql(
    'sessions.list',
    `SELECT ${t.id}::text AS id,
            ${groupExpr(t)} AS "group",
            COALESCE(${openPredicate(t)}, false) AS open,
            ${t.startedAt} AS "startedAt",
            ${lastSeenExpr(t)} AS "lastSeenAt",
            ${t.endedAt[0] ?? 'NULL::timestamptz'} AS "endedAt",
            EXTRACT(EPOCH FROM (now() - ${t.startedAt}))::float8 AS "ageSeconds",
            EXTRACT(EPOCH FROM (now() - ${lastSeenExpr(t)}))::float8 AS "silentSeconds"
       FROM ${t.table}
      WHERE ${where}
      ORDER BY ${orderBy}
      LIMIT ${`$${values.push(limit)}`}`,
    values,
  )
}

/** The server's clock decides ages: one cutoff for a whole sweep, so every batch judges alike. */
export const cutoffFromNow = (seconds: number) => sql('sessions.cutoff', `SELECT now() - make_interval(secs => $1) AS cutoff`, [seconds])

export interface CloseBatchOptions {
  cursor?: string
  batchSize: number
  closeTimestamp: 'now' | 'lastSeen'
  auditTable: string
  auditId: string
}

/**
 * Closes up to batchSize matching sessions in one statement, so a batch is atomic even under
 * kill -9: each row is either fully closed (active, every endedAt column and the duration) or
 * untouched. Keyset order makes the whole run one pass: a sweep (a silence cutoff) walks the
 * orphan index in (lastSeen, id) order when the table has one, so it visits only orphans; other
 * closes walk the id. SKIP LOCKED leaves rows that a live writer holds for the next run instead
 * of waiting on them, and FOR UPDATE re-checks the filter against the row's latest version, so a
 * session that just showed a sign of life is not closed. The rows are then updated by id array,
 * which keeps the plan a key lookup whatever the batch size. The audit row's count moves in the
 * same statement, so the audit trail can never disagree with the table.
 */
export function closeBatch(t: SessionTable, filter: SessionFilter, options: CloseBatchOptions): Sql {
  const values: unknown[] = []
  let where = whereClause(t, { ...filter, open: true }, values)
  const bySilence = filter.silentBefore !== undefined && t.silenceIndexed
  const seen = lastSeenExpr(t)
  if (options.cursor !== undefined) {
    if (bySilence) {
      const [at, id] = JSON.parse(options.cursor) as [string, string]
      const after = `$${values.push(at)}::timestamptz`
      where += ` AND ${seen} >= ${after} AND (${seen}, ${t.id}) > (${after}, $${values.push(id)})`
    } else {
      where += ` AND ${t.id} > $${values.push(options.cursor)}`
    }
  }
  const limit = `$${values.push(options.batchSize)}`
  const auditId = `$${values.push(options.auditId)}`
  const endedAt = options.closeTimestamp === 'now' ? 'now()' : lastSeenExpr(t)
  const assignments = [
    ...(t.active ? [`${t.active} = false`] : []),
    ...t.endedAt.map((column) => `${column} = ${endedAt}`),
    ...(t.durationSeconds ? [`${t.durationSeconds} = GREATEST(EXTRACT(EPOCH FROM (${endedAt} - ${t.startedAt})), 0)`] : []),
  ]
  const cursor = bySilence
    ? `(SELECT json_build_array(seen, id)::text FROM batch ORDER BY seen DESC, id DESC LIMIT 1)`
    : `(SELECT id::text FROM batch ORDER BY id DESC LIMIT 1)`
  return sql(
    'sessions.closeBatch',
    `WITH batch AS (
       SELECT ${t.id} AS id, ${seen} AS seen
         FROM ${t.table}
        WHERE ${where}
        ORDER BY ${bySilence ? `${seen}, ${t.id}` : t.id}
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
     ), closed AS (
       UPDATE ${t.table}
          SET ${assignments.join(', ')}
        WHERE ${t.id} = ANY (ARRAY(SELECT id FROM batch))
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

export interface DailyStatsOptions {
  days: number
  byGroup: boolean
  orphanAfterSeconds: number
}

/** The post-mortem's daily health query: totals, average duration, still active, and orphans. */
export function dailyStats(t: SessionTable, options: DailyStatsOptions): Sql {
  const values: unknown[] = [options.days, options.orphanAfterSeconds]
  const group = options.byGroup ? `${groupExpr(t)}` : `'${ALL_GROUPS}'`
  return sql(
    'sessions.dailyStats',
    `SELECT to_char(date_trunc('day', ${t.startedAt}), 'YYYY-MM-DD') AS day,
            ${group} AS "group",
            count(*)::int8 AS total,
            (avg(${durationExpr(t)}) FILTER (WHERE (${openPredicate(t)}) IS NOT TRUE))::float8 AS "avgDurationSeconds",
            (count(*) FILTER (WHERE ${openPredicate(t)}))::int8 AS "stillActive",
            (count(*) FILTER (WHERE ${openPredicate(t)} AND ${lastSeenExpr(t)} < now() - make_interval(secs => $2)))::int8 AS orphaned
       FROM ${t.table}
      WHERE ${t.startedAt} >= date_trunc('day', now()) - make_interval(days => $1 - 1)
      GROUP BY 1, 2
      ORDER BY 1 DESC, 2`,
    values,
  )
}
