import { hostname, userInfo } from 'node:os'
import type pg from 'pg'
import { ExitCode, WardenError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { abortStaleRuns, auditTable, auditTableExists, finishAudit, insertAudit, type AuditStatus } from '../db/queries/audit.js'
import { closeBatch, cutoffFromNow, summarize, type SessionFilter } from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'
import { sql } from '../db/sql.js'
import { listSessionRows, type SessionRow } from './inspect.js'

/** Values of the `reason` label of warden_sessions_closed_total. */
export type CloseReason = 'orphan_sweep' | 'bulk_close' | 'shutdown' | 'disconnect'

export interface CloseRequest {
  /** which sessions; open-only is always added */
  filter: SessionFilter
  /** the filter as the user expressed it, for the audit row and the report */
  filterDescription: Record<string, unknown>
  reason: CloseReason
  command: string
  dryRun: boolean
  batchSize: number
  maxRows?: number
  sampleSize?: number
  wardenSchema: string
  actor?: string
  onProgress?: (progress: { closed: number; total: number; batches: number }) => void
  /** checked between batches: a graceful shutdown finishes the batch in flight, then stops */
  signal?: AbortSignal
}

export interface CloseReport {
  dryRun: boolean
  reason: CloseReason
  /** open sessions matching the filter when the run started */
  matched: number
  closed: number
  batches: number
  /** dry run: matched by group; apply: closed by group */
  byGroup: Record<string, number>
  /** how long the most silent matching session had been silent, in seconds */
  oldestSilentSeconds: number | null
  /** matching sessions still open after an apply: held by a live writer (SKIP LOCKED) or beyond --max-rows */
  remaining: number | null
  durationMs: number
  maxBatchMs: number
  sample: SessionRow[]
  auditId: string | null
  stoppedEarly: 'max-rows' | 'signal' | null
  warnings: string[]
}

const lockKey = (t: SessionTable) => `warden:close:${t.name.schema}.${t.name.name}`

export function defaultActor(): string {
  const user = process.env.WARDEN_ACTOR ?? safeUsername()
  return `${user}@${hostname()}`
}

function safeUsername(): string {
  try {
    return userInfo().username
  } catch {
    return 'unknown'
  }
}

/**
 * Closes sessions in batches, or only reports what it would close. One closer per table at a
 * time across processes and hosts: a session-level advisory lock held on the connection that
 * runs the batches, so a killed process releases it with its connection. Dry runs take no lock.
 */
export async function closeSessions(db: Database, table: SessionTable, request: CloseRequest): Promise<CloseReport> {
  const started = performance.now()
  return db.withClient(async (client) => {
    // A dry run changes nothing, so it neither waits for nor blocks a real run.
    if (request.dryRun) return runLocked(db, client, table, request, started)
    const [lock] = await db.rows<{ locked: boolean }>(
      sql('close.tryLock', 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [lockKey(table)]),
      client,
    )
    if (!lock?.locked) {
      throw new WardenError(
        `another sweep or close is running on ${table.name.schema}.${table.name.name} (advisory lock held); try again when it has finished`,
        ExitCode.locked,
      )
    }
    try {
      return await runLocked(db, client, table, request, started)
    } finally {
      await db
        .query(sql('close.unlock', 'SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey(table)]), client)
        .catch(() => undefined)
    }
  })
}

async function runLocked(
  db: Database,
  client: pg.PoolClient,
  table: SessionTable,
  request: CloseRequest,
  started: number,
): Promise<CloseReport> {
  const warnings: string[] = []
  // One cutoff for the whole run: a session that goes silent during the sweep is next run's business.
  let filter = request.filter
  if (filter.silentForSeconds !== undefined) {
    const [row] = await db.rows<{ cutoff: Date }>(cutoffFromNow(filter.silentForSeconds), client)
    filter = { ...filter, silentForSeconds: undefined, silentBefore: row!.cutoff }
  }
  const openFilter = { ...filter, open: true }
  const groups = await db.rows<{ group: string; count: string; oldestSilentSeconds: number }>(summarize(table, openFilter), client)
  const matched = groups.reduce((sum, g) => sum + Number(g.count), 0)
  const oldestSilentSeconds = groups.length ? Math.max(...groups.map((g) => g.oldestSilentSeconds)) : null
  const sample = await listSessionRows(db, table, openFilter, request.sampleSize ?? 5, 'silent', client)

  const auditReady = (await db.rows<{ exists: boolean }>(auditTableExists(request.wardenSchema), client))[0]?.exists ?? false
  if (!auditReady && !request.dryRun) {
    throw new WardenError(
      `Warden's audit table ${request.wardenSchema}.audit_log does not exist, and mutations are always audited: run \`warden db migrate\` first`,
      ExitCode.config,
    )
  }
  if (!table.idUnique) {
    warnings.push(`${table.config.columns.id} has no unique index: batches may leave a few sessions for the next run`)
  }
  const audit = {
    actor: request.actor ?? defaultActor(),
    command: request.command,
    target: `${table.name.schema}.${table.name.name}`,
    reason: request.reason,
    filter: request.filterDescription,
    dryRun: request.dryRun,
    rowsMatched: matched,
  }

  const report: CloseReport = {
    dryRun: request.dryRun,
    reason: request.reason,
    matched,
    closed: 0,
    batches: 0,
    byGroup: Object.fromEntries(groups.map((g) => [g.group, Number(g.count)])),
    oldestSilentSeconds,
    remaining: null,
    durationMs: 0,
    maxBatchMs: 0,
    sample,
    auditId: null,
    stoppedEarly: null,
    warnings,
  }

  if (request.dryRun) {
    if (auditReady) {
      report.auditId = (await db.rows<{ id: string }>(insertAudit(request.wardenSchema, audit), client))[0]!.id
    } else {
      warnings.push(`dry run not recorded: ${request.wardenSchema}.audit_log does not exist (run \`warden db migrate\`)`)
    }
    report.durationMs = performance.now() - started
    return report
  }

  await db.query(abortStaleRuns(request.wardenSchema, audit.target), client)
  const auditId = (await db.rows<{ id: string }>(insertAudit(request.wardenSchema, audit), client))[0]!.id
  report.auditId = auditId
  report.byGroup = {}
  let cursor: string | undefined
  let status: AuditStatus = 'ok'
  let failure: Error | undefined
  try {
    for (;;) {
      if (request.signal?.aborted) {
        report.stoppedEarly = 'signal'
        break
      }
      const budget = request.maxRows === undefined ? request.batchSize : Math.min(request.batchSize, request.maxRows - report.closed)
      if (budget <= 0) {
        report.stoppedEarly = 'max-rows'
        break
      }
      const batchStarted = performance.now()
      const [batch] = await db.rows<{ picked: string; cursor: string | null; byGroup: Record<string, number> }>(
        closeBatch(table, filter, {
          cursor,
          batchSize: budget,
          closeTimestamp: table.config.closeTimestamp,
          auditTable: auditTable(request.wardenSchema),
          auditId,
        }),
        client,
      )
      report.maxBatchMs = Math.max(report.maxBatchMs, performance.now() - batchStarted)
      const picked = Number(batch!.picked)
      if (picked === 0) break
      report.batches += 1
      for (const [group, n] of Object.entries(batch!.byGroup)) {
        report.byGroup[group] = (report.byGroup[group] ?? 0) + n
        report.closed += n
      }
      cursor = batch!.cursor ?? cursor
      request.onProgress?.({ closed: report.closed, total: Math.min(matched, request.maxRows ?? matched), batches: report.batches })
      if (picked < budget) break
    }
    // Everything that matched was closed: nothing can be left (the cutoff is fixed), so skip the count.
    report.remaining =
      report.closed >= matched
        ? 0
        : (await db.rows<{ count: string }>(summarize(table, openFilter), client)).reduce((sum, g) => sum + Number(g.count), 0)
    if (report.remaining > 0 && report.stoppedEarly === null) {
      warnings.push(`${report.remaining} matching session(s) were held by a live writer and skipped; the next run will take them`)
    }
    if (report.stoppedEarly || report.remaining > 0) status = 'partial'
  } catch (error) {
    status = 'failed'
    failure = error as Error
    throw error
  } finally {
    report.durationMs = performance.now() - started
    const details = {
      closed: report.closed,
      batches: report.batches,
      byGroup: report.byGroup,
      remaining: report.remaining,
      stoppedEarly: report.stoppedEarly,
      maxBatchMs: Math.round(report.maxBatchMs),
    }
    await db.query(finishAudit(request.wardenSchema, auditId, status, details, failure?.message), client).catch(() => undefined)
  }
  return report
}
