import { quoteIdent, sql } from '../sql.js'

export const auditTable = (schema: string) => `${quoteIdent(schema)}.audit_log`

export interface AuditStart {
  actor: string
  command: string
  target: string
  reason: string
  filter: Record<string, unknown>
  dryRun: boolean
  /** null when the run was refused before it counted anything */
  rowsMatched: number | null
}

export const insertAudit = (schema: string, entry: AuditStart) =>
  sql(
    'audit.insert',
    `INSERT INTO ${auditTable(schema)} (actor, command, target, reason, filter, dry_run, rows_matched, status)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, CASE WHEN $6 THEN 'ok' ELSE 'running' END)
     RETURNING id::text AS id`,
    [entry.actor, entry.command, entry.target, entry.reason, JSON.stringify(entry.filter), entry.dryRun, entry.rowsMatched],
  )

/** running → ok | partial | failed; aborted: found dead by a later run; refused: never started (lock held, a hazard) */
export type AuditStatus = 'ok' | 'partial' | 'failed' | 'aborted' | 'refused'

export const finishAudit = (schema: string, id: string, status: AuditStatus, details: Record<string, unknown>, error?: string) =>
  sql(
    'audit.finish',
    `UPDATE ${auditTable(schema)}
        SET status = $2, finished_at = now(), details = $3::jsonb, error = $4
      WHERE id = $1`,
    [id, status, JSON.stringify(details), error ?? null],
  )

/**
 * Called by a closer that holds the table's lock: any applied run still marked running for the
 * same table cannot be alive (it would hold the lock), so it died mid-run, e.g. kill -9.
 */
export const abortStaleRuns = (schema: string, target: string) =>
  sql(
    'audit.abortStale',
    `UPDATE ${auditTable(schema)}
        SET status = 'aborted', finished_at = now(), error = 'the process ended before finishing; found by a later run'
      WHERE target = $1 AND status = 'running' AND NOT dry_run`,
    [target],
  )

export const recentAudit = (schema: string, limit: number) =>
  sql(
    'audit.recent',
    `SELECT id::text AS id, at, finished_at AS "finishedAt", actor, db_user AS "dbUser", command, target, reason,
            filter, dry_run AS "dryRun", rows_matched::int8 AS "rowsMatched", rows_affected::int8 AS "rowsAffected", status, error
       FROM ${auditTable(schema)}
      ORDER BY id DESC
      LIMIT $1`,
    [limit],
  )

export const auditTableExists = (schema: string) =>
  sql('audit.exists', `SELECT to_regclass($1) IS NOT NULL AS exists`, [`${quoteIdent(schema)}.audit_log`])
