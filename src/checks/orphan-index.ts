import { sql } from '../db/sql.js'
import { keyUsesColumn } from '../db/session-table.js'
import { requireSessions, type Check } from './types.js'

interface Row {
  estimatedRows: number
  indexes: Array<{ name: string; definition: string; firstKey: string; predicate: string | null }>
}

/**
 * The orphan query filters open sessions by their last sign of life. Without an index leading
 * with that column (or the COALESCE of it), every sweep and every metrics scrape reads the whole
 * table: harmless at a thousand rows, a load problem at millions.
 */
export const orphanIndex: Check<Row> = {
  name: 'orphan-index',
  scope: 'table',
  help: 'An index that serves the orphan query (leading with lastSeenAt, or startedAt when unmapped) on the mapped session table; quiet below checks.orphanIndexMinRows rows.',
  sql: (ctx) =>
    sql(
      'check.orphanIndex',
      `SELECT GREATEST(c.reltuples, 0)::float8 AS "estimatedRows",
              COALESCE((SELECT json_agg(json_build_object(
                                 'name', i.indexrelid::regclass::text,
                                 'definition', pg_get_indexdef(i.indexrelid),
                                 'firstKey', pg_get_indexdef(i.indexrelid, 1, true),
                                 'predicate', pg_get_expr(i.indpred, i.indrelid)))
                          FROM pg_catalog.pg_index i
                         WHERE i.indrelid = c.oid AND i.indisvalid), '[]'::json) AS indexes
         FROM pg_catalog.pg_class c
        WHERE c.oid = $1::regclass`,
      [requireSessions(ctx).table],
    ),
  evaluate(rows, ctx) {
    const table = requireSessions(ctx)
    const row = rows[0]!
    const { columns } = table.config
    const silenceColumn = columns.lastSeenAt ?? columns.startedAt
    const serving = row.indexes.filter((index) => keyUsesColumn(index.firstKey, silenceColumn))
    if (serving.length > 0)
      return { status: 'ok', message: `orphan query served by ${serving.map((index) => index.name).join(', ')}`, evidence: serving }
    const silence = table.lastSeenAt ? `(COALESCE(${table.lastSeenAt}, ${table.startedAt}))` : table.startedAt
    const predicate = table.active ? `WHERE ${table.active}` : table.endedAt[0] ? `WHERE ${table.endedAt[0]} IS NULL` : ''
    const ddl = `CREATE INDEX CONCURRENTLY ON ${table.table} (${silence}) ${predicate}`.trim()
    if (row.estimatedRows < ctx.checks.orphanIndexMinRows) {
      return {
        status: 'ok',
        message: `no index serves the orphan query, but the table is small (~${Math.round(row.estimatedRows)} rows); when it grows: ${ddl}`,
      }
    }
    return {
      status: 'warn',
      message: `no index serves the orphan query on ${table.name.schema}.${table.name.name} (~${Math.round(row.estimatedRows)} rows): sweeps and scrapes read the whole table; add one: ${ddl}`,
      evidence: row.indexes,
    }
  },
}
