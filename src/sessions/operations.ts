import type { WardenConfig } from '../core/config.js'
import { ExitCode, WardenError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import type { SessionFilter, SessionOrder } from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'
import type { CloseReason, CloseReport } from './close-sessions.js'
import { listSessionRows, sessionDailyStats, summarizeSessions, type DailyStatsRow, type GroupSummary, type SessionRow } from './inspect.js'
import {
  bulkClose,
  runOptions,
  sweepOrphans,
  type BulkCloseFilter,
  type BulkCloseResult,
  type RunSettings,
  type SweepResult,
} from './sweep.js'

/**
 * The session use cases, each in exactly one place: sweep, close, list and stats. The CLI, the
 * admin API and the scheduler call these and nothing else orchestrates a close; metrics listen to
 * the events (src/metrics), the use cases never import prom-client.
 */

/** A table Warden can work on: catalog-checked, with the database it lives in and the settings that apply. */
export interface SessionHandle {
  db: Database
  table: SessionTable
  config: WardenConfig
}

export type Outcome<T> =
  | { status: 'ok'; value: T }
  /** another sweep or close held the table's lock, or another session locked the table: not a failure, try later */
  | { status: 'locked'; error: WardenError }
  | { status: 'error'; error: Error }

/** Sessions a run closed, batch by batch as they commit: a run that fails half-way still reports what it did. */
export interface ClosedEvent {
  target: string
  table: string
  reason: CloseReason
  count: number
}

export interface RunEvent {
  kind: 'sweep' | 'close'
  target: string
  table: string
  status: Outcome<unknown>['status']
  dryRun: boolean
  durationMs: number
  report?: CloseReport
}

export interface OperationListener {
  onClosed?: (event: ClosedEvent) => void
  onRun?: (event: RunEvent) => void
}

/** The one classification of how a run ended. */
export function outcomeOf<T>(error: unknown): Outcome<T> {
  if (error instanceof WardenError && error.exitCode === ExitCode.locked) return { status: 'locked', error }
  return { status: 'error', error: error instanceof Error ? error : new Error(String(error)) }
}

/** The value of an outcome, or its error thrown: what a CLI command or an API route wants. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.status === 'ok') return outcome.value
  throw outcome.error
}

async function run<T extends { report: CloseReport }>(
  kind: RunEvent['kind'],
  handle: SessionHandle,
  settings: RunSettings,
  listener: OperationListener,
  reason: CloseReason,
  work: (options: ReturnType<typeof runOptions>) => Promise<T>,
): Promise<Outcome<T>> {
  const started = performance.now()
  const { target, label } = handle.table
  let counted = 0
  const options = runOptions(handle.config, {
    ...settings,
    onProgress(progress) {
      if (progress.closed > counted) listener.onClosed?.({ target, table: label, reason, count: progress.closed - counted })
      counted = Math.max(counted, progress.closed)
      settings.onProgress?.(progress)
    },
  })
  let outcome: Outcome<T>
  try {
    const value = await work(options)
    // batches report as they commit; whatever the last batch closed after its progress call is counted here
    if (value.report.closed > counted && !value.report.dryRun) {
      listener.onClosed?.({ target, table: label, reason, count: value.report.closed - counted })
    }
    outcome = { status: 'ok', value }
  } catch (error) {
    outcome = outcomeOf(error)
  }
  listener.onRun?.({
    kind,
    target,
    table: label,
    status: outcome.status,
    dryRun: options.dryRun,
    durationMs: performance.now() - started,
    report: outcome.status === 'ok' ? outcome.value.report : undefined,
  })
  return outcome
}

/** Orphans (open, silent past the table's orphanAfter) closed in batches, or only reported (dry run). */
export function sweep(handle: SessionHandle, settings: RunSettings, listener: OperationListener = {}): Promise<Outcome<SweepResult>> {
  return run('sweep', handle, settings, listener, 'orphan_sweep', (options) => sweepOrphans(handle.db, handle.table, options))
}

/** Bulk close by filter; an empty filter must be spelled {all: true}. */
export function close(
  handle: SessionHandle,
  filter: BulkCloseFilter,
  settings: RunSettings,
  listener: OperationListener = {},
): Promise<Outcome<BulkCloseResult>> {
  return run('close', handle, settings, listener, 'bulk_close', (options) => bulkClose(handle.db, handle.table, filter, options))
}

/** What `close` would match now, by group: the confirmation prompt's preview. */
export function preview(handle: SessionHandle, filter: BulkCloseFilter): Promise<GroupSummary[]> {
  return summarizeSessions(handle.db, handle.table, {
    open: true,
    startedBeforeSeconds: filter.olderThanSeconds,
    groups: filter.groups,
    ids: filter.ids,
  })
}

export const SESSION_STATES = ['active', 'orphaned', 'recent', 'closed', 'all'] as const
export type SessionState = (typeof SESSION_STATES)[number]

/** The meaning of each state of `sessions list --state` and GET /api/sessions?state=, once. */
export function stateFilter(
  state: SessionState,
  table: SessionTable,
  sinceSeconds: number,
): { filter: SessionFilter; order: SessionOrder } {
  const filters: Record<SessionState, SessionFilter> = {
    active: { open: true },
    orphaned: { open: true, silentForSeconds: table.config.orphanAfter },
    recent: { startedWithinSeconds: sinceSeconds },
    closed: { open: false },
    all: {},
  }
  return { filter: filters[state], order: state === 'active' || state === 'orphaned' ? 'silent' : 'newest' }
}

export interface ListQuery {
  state: SessionState
  groups?: string[]
  /** for state recent */
  sinceSeconds: number
  limit: number
  offset?: number
}

export interface ListResult {
  rows: SessionRow[]
  /** every session in that state (and groups), not only this page */
  total: number
  hasMore: boolean
}

export async function list(handle: SessionHandle, query: ListQuery): Promise<ListResult> {
  const { filter, order } = stateFilter(query.state, handle.table, query.sinceSeconds)
  const offset = query.offset ?? 0
  const full = { ...filter, groups: query.groups }
  const [rows, summary] = await Promise.all([
    listSessionRows(handle.db, handle.table, full, offset + query.limit, order),
    summarizeSessions(handle.db, handle.table, full),
  ])
  const total = summary.reduce((sum, group) => sum + group.count, 0)
  const page = rows.slice(offset)
  return { rows: page, total, hasMore: offset + page.length < total }
}

export function stats(handle: SessionHandle, options: { days: number; byGroup: boolean }): Promise<DailyStatsRow[]> {
  return sessionDailyStats(handle.db, handle.table, options.days, options.byGroup)
}
