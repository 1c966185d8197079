import type { Database } from '../db/database.js'
import type { WardenConfig } from '../core/config.js'
import { formatDuration } from '../core/duration.js'
import { usageError } from '../core/errors.js'
import type { SessionFilter } from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'
import { closeSessions, type Batching, type CloseReport, type CloseRequest } from './close-sessions.js'
import type { SessionRow } from './inspect.js'

export type RunOptions = Pick<
  CloseRequest,
  'dryRun' | 'batching' | 'maxRows' | 'sampleSize' | 'wardenSchema' | 'command' | 'onProgress' | 'signal' | 'actor' | 'force'
>

/** What an entry point (CLI, API, scheduler) says about one run; the rest comes from config. */
export interface RunSettings {
  /** required: a mutation never happens because a caller forgot to say dry run */
  apply: boolean
  command: string
  actor?: string
  /** a fixed batch size for this run (the API's batchSize); else config decides */
  batchSize?: number
  maxRows?: number
  sample?: number
  force?: boolean
  onProgress?: CloseRequest['onProgress']
  signal?: AbortSignal
}

/** The one place a run's options are built from config and an entry point's settings. */
export function runOptions(config: WardenConfig, settings: RunSettings): RunOptions {
  if (typeof settings.apply !== 'boolean') throw new TypeError('runOptions: apply must be true or false')
  return {
    dryRun: !settings.apply,
    batching: batchingOf(config, settings.batchSize),
    maxRows: settings.maxRows ?? config.sweep.maxRows,
    sampleSize: settings.sample,
    wardenSchema: config.wardenSchema,
    command: settings.command,
    actor: settings.actor,
    force: settings.force ?? false,
    onProgress: settings.onProgress,
    signal: settings.signal,
  }
}

/**
 * An explicit batch size (the entry point's, else sweep.batchSize from a flag, the environment or
 * the file) is a fixed count, exactly as asked; without one, batches adapt toward sweep.batchTarget.
 */
export function batchingOf(config: WardenConfig, batchSize?: number): Batching {
  const size = batchSize ?? config.sweep.batchSize
  return size !== undefined ? { mode: 'fixed', batchSize: size } : { mode: 'adaptive', targetMs: config.sweep.batchTarget * 1000 }
}

/** Below this, a pause in a conversation is an "orphan": a sweep that applies it needs force. */
export const ORPHAN_AFTER_FLOOR_SECONDS = 60

/** The stable --json / API shape of a close run (documented in README). */
export interface CloseJson {
  dryRun: boolean
  /** the target (database) the table belongs to */
  target: string
  table: string
  closed: number
  remaining: number | null
  batches: number
  byGroup: Record<string, number>
  oldestAgeSeconds: number | null
  durationMs: number
  maxBatchMs: number
  /** fixed (with its batchSize) or adaptive (with its targetMs per batch) */
  batching: Batching
  /** the largest batch that committed, in rows */
  maxBatchSize: number
  stoppedEarly: CloseReport['stoppedEarly']
  skipped: CloseReport['skipped']
  sample: SessionRow[]
  auditId: string | null
  warnings: string[]
}

export interface SweepResult {
  report: CloseReport
  json: CloseJson & { orphans: number; orphanAfterSeconds: number }
}

export interface BulkCloseResult {
  report: CloseReport
  json: CloseJson & { matched: number; filter: Record<string, unknown> }
}

function toJson(table: SessionTable, report: CloseReport): CloseJson {
  return {
    dryRun: report.dryRun,
    target: table.target,
    table: `${table.name.schema}.${table.name.name}`,
    closed: report.closed,
    remaining: report.remaining,
    batches: report.batches,
    byGroup: report.byGroup,
    oldestAgeSeconds: report.oldestSilentSeconds === null ? null : Math.round(report.oldestSilentSeconds),
    durationMs: Math.round(report.durationMs),
    maxBatchMs: Math.round(report.maxBatchMs),
    batching: report.batching,
    maxBatchSize: report.maxBatchSize,
    stoppedEarly: report.stoppedEarly,
    skipped: report.skipped,
    sample: report.sample,
    auditId: report.auditId,
    warnings: report.warnings,
  }
}

/** Orphans: open sessions silent (lastSeenAt, else startedAt) for longer than orphanAfter. */
export async function sweepOrphans(db: Database, table: SessionTable, options: RunOptions): Promise<SweepResult> {
  const orphanAfterSeconds = table.config.orphanAfter
  if (!options.dryRun && orphanAfterSeconds < ORPHAN_AFTER_FLOOR_SECONDS && !options.force) {
    throw usageError(
      `sessions.orphanAfter (--orphan-after) = ${formatDuration(orphanAfterSeconds)} is below the ${formatDuration(ORPHAN_AFTER_FLOOR_SECONDS)} floor: a user who pauses for a minute would have their session closed; pass --force (API: "force": true) if that is what you mean`,
    )
  }
  const report = await closeSessions(db, table, {
    ...options,
    filter: { silentForSeconds: orphanAfterSeconds },
    filterDescription: { orphanAfterSeconds },
    reason: 'orphan_sweep',
  })
  return { report, json: { ...toJson(table, report), orphans: report.matched, orphanAfterSeconds } }
}

export interface BulkCloseFilter {
  all?: boolean
  olderThanSeconds?: number
  groups?: string[]
  ids?: string[]
}

export function isEmptyFilter(filter: BulkCloseFilter): boolean {
  return !filter.olderThanSeconds && !filter.groups?.length && !filter.ids?.length
}

/** Bulk close for shutdowns and incidents. An empty filter must be spelled --all by the caller. */
export async function bulkClose(db: Database, table: SessionTable, filter: BulkCloseFilter, options: RunOptions): Promise<BulkCloseResult> {
  const sessionFilter: SessionFilter = {
    startedBeforeSeconds: filter.olderThanSeconds,
    groups: filter.groups,
    ids: filter.ids,
  }
  const description: Record<string, unknown> = {
    ...(filter.all ? { all: true } : {}),
    ...(filter.olderThanSeconds ? { olderThanSeconds: filter.olderThanSeconds } : {}),
    ...(filter.groups?.length ? { groups: filter.groups } : {}),
    ...(filter.ids?.length ? { ids: filter.ids } : {}),
  }
  const report = await closeSessions(db, table, { ...options, filter: sessionFilter, filterDescription: description, reason: 'bulk_close' })
  return { report, json: { ...toJson(table, report), matched: report.matched, filter: description } }
}
