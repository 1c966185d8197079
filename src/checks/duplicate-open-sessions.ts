import { openPredicate } from '../db/queries/sessions.js'
import { sql } from '../db/sql.js'
import { requireSessions, type Check } from './types.js'

interface Row {
  owner: string
  openSessions: number
  owners: number
}

/**
 * Post-mortem 4: an orchestrator that ignores the supplied session id and mints its own leaves
 * an owner with several open sessions, only one of which anything will ever close.
 */
export const duplicateOpenSessions: Check<Row> = {
  name: 'duplicate-open-sessions',
  scope: 'table',
  help: 'Owners (sessions.columns.owner) with more than one open session.',
  skipReason: 'sessions.columns.owner is not mapped',
  sql(ctx) {
    const t = requireSessions(ctx)
    if (!t.owner) return undefined
    return sql(
      'check.duplicateOpenSessions',
      `SELECT owner, "openSessions", count(*) OVER ()::int AS owners
         FROM (SELECT ${t.owner}::text AS owner, count(*)::int AS "openSessions"
                 FROM ${t.table}
                WHERE ${openPredicate(t)} AND ${t.owner} IS NOT NULL
                GROUP BY 1
               HAVING count(*) > 1) d
        ORDER BY "openSessions" DESC, owner
        LIMIT 20`,
    )
  },
  evaluate(rows) {
    if (rows.length === 0) return { status: 'ok', message: 'no owner has more than one open session' }
    return {
      status: 'warn',
      message: `${rows[0]!.owners} owner(s) have more than one open session; most: ${rows[0]!.owner} with ${rows[0]!.openSessions}`,
      evidence: rows.map(({ owner, openSessions }) => ({ owner, openSessions })),
    }
  },
}
