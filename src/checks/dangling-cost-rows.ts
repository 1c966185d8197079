import { configError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { findRelation, listColumns } from '../db/queries/catalog.js'
import { parseQualifiedName, quoteIdent, quoteQualified, sql } from '../db/sql.js'
import { requireSessions, type Check } from './types.js'

interface Row {
  dangling: string
  sample: string[] | null
}

async function checkedCostTable(db: Database, table: string, column: string): Promise<string> {
  const name = parseQualifiedName(table)
  const [relation] = await db.rows<{ oid: string }>(findRelation(name.schema, name.name))
  if (!relation) throw configError(`checks.costRows.table = "${table}": no such table`)
  const columns = await db.rows<{ name: string }>(listColumns(relation.oid))
  if (!columns.some((c) => c.name === column)) {
    throw configError(
      `checks.costRows.sessionId = "${column}": ${table} has no column ${column}; it has: ${columns.map((c) => c.name).join(', ')}`,
    )
  }
  return quoteQualified(name)
}

/**
 * Post-mortem 3 and 4: cost rows written with a session id nobody owns (a generated UUID instead
 * of the supplied one), or for a session that was never persisted. Billing that points nowhere.
 */
export const danglingCostRows: Check<Row> = {
  name: 'dangling-cost-rows',
  scope: 'table',
  help: 'Rows of the llm_requests-like table (checks.costRows) whose session id matches no session in the mapped table.',
  skipReason: 'checks.costRows is not configured',
  async sql(ctx) {
    const cost = ctx.checks.costRows
    if (!cost) return undefined
    const sessions = requireSessions(ctx)
    const costTable = await checkedCostTable(ctx.db, cost.table, cost.sessionId)
    const sessionId = quoteIdent(cost.sessionId)
    return sql(
      'check.danglingCostRows',
      `SELECT count(*)::int8 AS dangling,
              (array_agg(DISTINCT c.${sessionId}::text))[1:5] AS sample
         FROM ${costTable} c
        WHERE c.${sessionId} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM ${sessions.table} s WHERE s.${sessions.id} = c.${sessionId})`,
    )
  },
  evaluate(rows, ctx) {
    const dangling = Number(rows[0]?.dangling ?? 0)
    const table = ctx.checks.costRows!.table
    if (dangling === 0) return { status: 'ok', message: `every ${table} row points at an existing session` }
    return {
      status: 'warn',
      message: `${dangling} ${table} row(s) reference sessions that do not exist (e.g. ${(rows[0]!.sample ?? []).join(', ')}): an id generated instead of the supplied one, or a session never saved`,
      evidence: [{ dangling, sampleSessionIds: rows[0]!.sample ?? [] }],
    }
  },
}
