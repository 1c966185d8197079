import { hostname, userInfo } from 'node:os'
import type pg from 'pg'
import { ExitCode, sqlstateOf, WardenError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import {
  abortStaleRuns,
  auditTable,
  auditTableExists,
  finishAudit,
  insertAudit,
  type AuditStart,
  type AuditStatus,
} from '../db/queries/audit.js'
import {
  closeBatch,
  cutoffFromNow,
  nextBatchRow,
  summarize,
  walkOrder,
  type CloseBatchOptions,
  type SessionFilter,
} from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'
import { sql } from '../db/sql.js'
import { explainTableLock } from '../db/table-locks.js'
import { checkClockSkew } from './clock-skew.js'
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
  /** explicit on purpose: a caller that forgets to say gets an error, never a silent guess */
  dryRun: boolean
  batching: Batching
  maxRows?: number
  sampleSize?: number
  wardenSchema: string
  actor?: string
  /** go ahead despite a refusable hazard (an implausible clock skew of naive timestamps) */
  force?: boolean
  onProgress?: (progress: { closed: number; total: number; batches: number }) => void
  /** checked between batches: a graceful shutdown finishes the batch in flight, then stops */
  signal?: AbortSignal
}

/**
 * How many rows a batch takes. Fixed: the count given (an explicit --batch-size, sweep.batchSize,
 * WARDEN_BATCH_SIZE or the API's batchSize). Adaptive: sized so a batch takes about targetMs, because
 * what keeps a sweep kind to live writers is how long each transaction holds its row locks, and
 * rows per millisecond differ by an order of magnitude between tables (width, indexes, triggers,
 * partitions, the disk); a fixed count is either slow on fast tables or long on slow ones.
 */
export type Batching = { mode: 'fixed'; batchSize: number } | { mode: 'adaptive'; targetMs: number }

/** The first batch's size: the fixed one, or the adaptive start. */
export const firstBatchSize = (batching: Batching): number => (batching.mode === 'fixed' ? batching.batchSize : ADAPTIVE_START)

/** The first adaptive batch: small enough to be short on a slow table, big enough to measure a rate. */
export const ADAPTIVE_START = 1_000
/** The largest adaptive batch (the largest explicit --batch-size too): the UPDATE's ctid array stays modest. */
export const ADAPTIVE_MAX = 100_000
/** At most ×4 or ÷4 from one batch to the next: one batch slowed by a checkpoint or a cold cache cannot swing the next far. */
export const ADAPTIVE_STEP = 4

/**
 * The next adaptive size after a full batch of `rows` that took `ms`: the count the measured rate
 * closes in targetMs, bounded per step and by ADAPTIVE_MAX. The per-statement overhead makes a
 * small batch look slower than the table is, so the estimate errs short and converges upward.
 */
export function nextAdaptiveSize(current: number, rows: number, ms: number, targetMs: number): number {
  const wanted = ms > 0 ? (rows / ms) * targetMs : current * ADAPTIVE_STEP
  const bounded = Math.min(current * ADAPTIVE_STEP, Math.max(current / ADAPTIVE_STEP, wanted))
  return Math.max(1, Math.min(ADAPTIVE_MAX, Math.round(bounded)))
}

/** A row whose close the database refused (a value that overflows, a constraint, a trigger): set aside, reported. */
export interface SkippedRow {
  id: string | null
  error: string
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
  /** matching sessions still open after an apply: held by a live writer (SKIP LOCKED), set aside, or beyond --max-rows */
  remaining: number | null
  /** rows the database would not let Warden close, with why (at most SKIPPED_SHOWN ids are kept) */
  skipped: { count: number; rows: SkippedRow[] }
  durationMs: number
  maxBatchMs: number
  /** how batches were sized */
  batching: Batching
  /** the largest batch (its LIMIT) that committed; 0 when none did */
  maxBatchSize: number
  sample: SessionRow[]
  auditId: string | null
  stoppedEarly: 'max-rows' | 'signal' | null
  warnings: string[]
}

const SKIPPED_SHOWN = 20

const lockKey = (t: SessionTable) => `warden:close:${t.name.schema}.${t.name.name}`
const tableName = (t: SessionTable) => `${t.name.schema}.${t.name.name}`

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
 * Errors that belong to one row rather than to the run: a value out of range (a 1900 start date
 * overflowing an integer duration), a constraint or a trigger that refuses the close. Such a row
 * is set aside and reported; the rest of the table is still swept.
 */
function isRowError(error: unknown): boolean {
  const state = sqlstateOf(error)
  return state !== undefined && (state.startsWith('22') || state.startsWith('23') || state === 'P0001')
}

/**
 * Closes sessions in batches, or only reports what it would close. One closer per table at a
 * time across processes and hosts: a session-level advisory lock held on the connection that
 * runs the batches, so a killed process releases it with its connection. Dry runs take no lock.
 */
export async function closeSessions(db: Database, table: SessionTable, request: CloseRequest): Promise<CloseReport> {
  if (typeof request.dryRun !== 'boolean') throw new TypeError('closeSessions: dryRun must be true or false')
  const started = performance.now()
  return db.withClient(async (client) => {
    // A dry run changes nothing, so it neither waits for nor blocks a real run.
    if (request.dryRun) return await runLocked(db, client, table, request, started)
    const [lock] = await db.rows<{ locked: boolean }>(
      sql('close.tryLock', 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [lockKey(table)]),
      client,
    )
    if (!lock?.locked) {
      const refusal = new WardenError(
        `another sweep or close is running on ${tableName(table)} (advisory lock held); try again when it has finished`,
        ExitCode.locked,
      )
      await auditRefusal(db, client, table, request, 'refused', refusal.message)
      throw refusal
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

function auditStart(table: SessionTable, request: CloseRequest, matched: number | null): AuditStart {
  return {
    actor: request.actor ?? defaultActor(),
    command: request.command,
    target: tableName(table),
    reason: request.reason,
    filter: request.filterDescription,
    dryRun: request.dryRun,
    rowsMatched: matched,
  }
}

/** A mutation that never started (locked, refused, failed before its first batch) still leaves its trace. */
async function auditRefusal(
  db: Database,
  client: pg.PoolClient,
  table: SessionTable,
  request: CloseRequest,
  status: Extract<AuditStatus, 'refused' | 'failed'>,
  message: string,
): Promise<void> {
  if (request.dryRun) return
  const ready = (await db.rows<{ exists: boolean }>(auditTableExists(request.wardenSchema), client).catch(() => []))[0]?.exists
  if (!ready) return
  await db
    .rows<{ id: string }>(insertAudit(request.wardenSchema, auditStart(table, request, null)), client)
    .then(([row]) => row && db.query(finishAudit(request.wardenSchema, row.id, status, {}, message), client))
    .catch(() => undefined)
}

async function runLocked(
  db: Database,
  client: pg.PoolClient,
  table: SessionTable,
  request: CloseRequest,
  started: number,
): Promise<CloseReport> {
  const warnings: string[] = []
  const auditReady = (await db.rows<{ exists: boolean }>(auditTableExists(request.wardenSchema), client))[0]?.exists ?? false
  if (!auditReady && !request.dryRun) {
    throw new WardenError(
      `Warden's audit table ${request.wardenSchema}.audit_log does not exist, and mutations are always audited: run \`warden db migrate\` first`,
      ExitCode.config,
    )
  }
  let filter = request.filter
  let auditId: string | undefined
  try {
    if (filter.silentForSeconds !== undefined) {
      const skew = await checkClockSkew(db, client, table, filter.silentForSeconds)
      if (skew.refusal && !request.dryRun && !request.force) throw skew.refusal
      warnings.push(...skew.warnings, ...(skew.refusal ? [skew.refusal.message] : []))
      // One cutoff for the whole run: a session that goes silent during the sweep is next run's business.
      const [row] = await db.rows<{ cutoff: string }>(cutoffFromNow(filter.silentForSeconds), client)
      filter = { ...filter, silentForSeconds: undefined, silentBefore: row!.cutoff }
    }
    const openFilter = { ...filter, open: true }
    const groups = await db.rows<{ group: string; count: string; oldestSilentSeconds: number }>(summarize(table, openFilter), client)
    const matched = groups.reduce((sum, g) => sum + Number(g.count), 0)
    const oldestSilentSeconds = groups.length ? Math.max(...groups.map((g) => g.oldestSilentSeconds)) : null
    const sample = await listSessionRows(db, table, openFilter, request.sampleSize ?? 5, 'silent', client)
    const firstBatch = firstBatchSize(request.batching)
    if (walkOrder(table, filter) === 'none' && matched > firstBatch) {
      warnings.push(
        `${table.config.columns.id} is not a unique NOT NULL key and no index serves this walk: every batch scans from the start (correct, but slower on big tables)`,
      )
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
      skipped: { count: 0, rows: [] },
      durationMs: 0,
      maxBatchMs: 0,
      batching: request.batching,
      maxBatchSize: 0,
      sample,
      auditId: null,
      stoppedEarly: null,
      warnings,
    }

    if (request.dryRun) {
      if (auditReady) {
        report.auditId = (
          await db.rows<{ id: string }>(insertAudit(request.wardenSchema, auditStart(table, request, matched)), client)
        )[0]!.id
      } else {
        warnings.push(`dry run not recorded: ${request.wardenSchema}.audit_log does not exist (run \`warden db migrate\`)`)
      }
      report.durationMs = performance.now() - started
      return report
    }

    await db.query(abortStaleRuns(request.wardenSchema, tableName(table)), client)
    auditId = (await db.rows<{ id: string }>(insertAudit(request.wardenSchema, auditStart(table, request, matched)), client))[0]!.id
    report.auditId = auditId
    report.byGroup = {}
    return await applyBatches(db, client, table, request, filter, report, auditId, started)
  } catch (caught) {
    const error = (await explainTableLock(db, { oid: table.oid, name: tableName(table) }, caught)) as Error
    // A run that failed before it had an audit row of its own gets one now.
    if (auditId === undefined) await auditRefusal(db, client, table, request, isRefusal(caught) ? 'refused' : 'failed', error.message)
    throw error
  }
}

const isRefusal = (error: unknown) =>
  sqlstateOf(error) === '55P03' ||
  (error instanceof WardenError && error.exitCode !== ExitCode.failed && error.exitCode !== ExitCode.unavailable)

async function applyBatches(
  db: Database,
  client: pg.PoolClient,
  table: SessionTable,
  request: CloseRequest,
  filter: SessionFilter,
  report: CloseReport,
  auditId: string,
  started: number,
): Promise<CloseReport> {
  const { warnings } = report
  const options: CloseBatchOptions = {
    order: walkOrder(table, filter),
    batchSize: 0, // set per batch
    closeTimestamp: table.config.closeTimestamp,
    auditTable: auditTable(request.wardenSchema),
    auditId,
    skip: [],
  }
  const { batching } = request
  // goal: the size of a normal batch (fixed, or adapted after each full one). size: the next
  // batch's, halved while a batch keeps failing on a row, doubled back toward goal after each success.
  let goal = firstBatchSize(batching)
  let size = goal
  let status: AuditStatus = 'ok'
  let failure: Error | undefined
  try {
    for (;;) {
      if (request.signal?.aborted) {
        report.stoppedEarly = 'signal'
        break
      }
      const budget = request.maxRows === undefined ? size : Math.min(size, request.maxRows - report.closed)
      if (budget <= 0) {
        report.stoppedEarly = 'max-rows'
        break
      }
      const batchStarted = performance.now()
      let batch: { picked: string; cursor: string | null; byGroup: Record<string, number> } | undefined
      try {
        ;[batch] = await db.rows<{ picked: string; cursor: string | null; byGroup: Record<string, number> }>(
          closeBatch(table, filter, { ...options, batchSize: budget }),
          client,
        )
      } catch (error) {
        if (!isRowError(error)) throw error
        // The whole statement rolled back. Narrow down to the row the database refuses, set it aside, go on.
        if (budget > 1) {
          size = Math.max(1, Math.floor(budget / 2))
          continue
        }
        const [poison] = await db.rows<{ key: string; id: string | null }>(nextBatchRow(table, filter, options), client)
        if (!poison) throw error
        options.skip.push(poison.key)
        report.skipped.count += 1
        if (report.skipped.rows.length < SKIPPED_SHOWN) report.skipped.rows.push({ id: poison.id, error: (error as Error).message })
        size = goal
        continue
      }
      const batchMs = performance.now() - batchStarted
      report.maxBatchMs = Math.max(report.maxBatchMs, batchMs)
      const picked = Number(batch!.picked)
      if (picked === 0) break
      report.batches += 1
      report.maxBatchSize = Math.max(report.maxBatchSize, budget)
      let closedNow = 0
      for (const [group, n] of Object.entries(batch!.byGroup)) {
        report.byGroup[group] = (report.byGroup[group] ?? 0) + n
        closedNow += n
      }
      report.closed += closedNow
      options.cursor = batch!.cursor ?? options.cursor
      request.onProgress?.({
        closed: report.closed,
        total: Math.min(report.matched, request.maxRows ?? report.matched),
        batches: report.batches,
      })
      // No progress means every row it picked changed under it: leave them to the next run rather than spin.
      if (picked < budget || closedNow === 0) break
      if (size < goal) {
        // recovering from a row error: a batch this small measures the statement, not the table
        size = Math.min(goal, size * 2)
      } else {
        if (batching.mode === 'adaptive' && budget === size) goal = nextAdaptiveSize(goal, picked, batchMs, batching.targetMs)
        size = goal
      }
    }
    // Everything that matched was closed: nothing can be left (the cutoff is fixed), so skip the count.
    report.remaining =
      report.closed >= report.matched
        ? 0
        : (await db.rows<{ count: string }>(summarize(table, { ...filter, open: true }), client)).reduce(
            (sum, g) => sum + Number(g.count),
            0,
          )
    if (report.skipped.count > 0) {
      const ids = report.skipped.rows.map((row) => row.id ?? 'NULL').join(', ')
      warnings.push(
        `${report.skipped.count} session(s) could not be closed and were set aside (ids: ${ids}${report.skipped.count > report.skipped.rows.length ? ', …' : ''}): ${report.skipped.rows[0]!.error}`,
      )
    }
    const heldByWriters = report.remaining - report.skipped.count
    if (heldByWriters > 0 && report.stoppedEarly === null) {
      warnings.push(`${heldByWriters} matching session(s) were held by a live writer and skipped; the next run will take them`)
    }
    if (report.stoppedEarly || report.remaining > 0) status = 'partial'
  } catch (error) {
    status = 'failed'
    failure = (await explainTableLock(db, { oid: table.oid, name: tableName(table) }, error)) as Error
    throw failure
  } finally {
    report.durationMs = performance.now() - started
    const details = {
      closed: report.closed,
      batches: report.batches,
      byGroup: report.byGroup,
      remaining: report.remaining,
      skipped: report.skipped,
      stoppedEarly: report.stoppedEarly,
      maxBatchMs: Math.round(report.maxBatchMs),
      batching: report.batching,
      maxBatchSize: report.maxBatchSize,
    }
    await db.query(finishAudit(request.wardenSchema, auditId, status, details, failure?.message), client).catch(() => undefined)
  }
  return report
}
