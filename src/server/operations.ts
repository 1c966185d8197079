import type { WardenConfig } from '../core/config.js'
import { ExitCode, WardenError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import type { WardenMetrics } from '../metrics/warden-metrics.js'
import { bulkClose, runOptions, sweepOrphans, type BulkCloseFilter, type BulkCloseResult, type SweepResult } from '../sessions/sweep.js'
import { usingSessionTable, type SessionTableResolver } from './session-table.js'

export interface OperationDeps {
  db: Database
  config: WardenConfig
  sessionTable: SessionTableResolver
  metrics: WardenMetrics
  /** aborted at shutdown: a running sweep finishes its batch in flight, then stops */
  signal?: AbortSignal
  /** called after an applied run, e.g. to refresh the session gauges at once */
  onChange?: () => void
}

export interface RunRequest {
  apply: boolean
  batchSize?: number
  maxRows?: number
  sample: number
  force?: boolean
  /** recorded in the audit row, e.g. api:10.0.0.7 */
  actor: string
  command: string
}

const isLocked = (error: unknown) => error instanceof WardenError && error.exitCode === ExitCode.locked

const options = (deps: OperationDeps, request: RunRequest, onProgress: (progress: { closed: number }) => void) =>
  runOptions(deps.config, { ...request, onProgress, signal: deps.signal })

/** An orphan sweep (library: src/sessions/sweep.ts) that reports to the sweep and close metrics. */
export async function sweepWithMetrics(deps: OperationDeps, request: RunRequest): Promise<SweepResult> {
  const started = performance.now()
  const progress = deps.metrics.closeProgress('orphan_sweep')
  try {
    const sweep = await usingSessionTable(deps.sessionTable, (table) =>
      sweepOrphans(deps.db, table, options(deps, request, progress.onProgress)),
    )
    deps.metrics.recordSweep({ result: 'ok', sweep, durationMs: performance.now() - started }, progress.counted())
    if (request.apply) deps.onChange?.()
    return sweep
  } catch (error) {
    const durationMs = performance.now() - started
    deps.metrics.recordSweep(isLocked(error) ? { result: 'locked', durationMs } : { result: 'error', error: error as Error, durationMs })
    throw error
  }
}

/** A bulk close that counts what it closed in warden_sessions_closed_total{reason="bulk_close"}. */
export async function closeWithMetrics(deps: OperationDeps, filter: BulkCloseFilter, request: RunRequest): Promise<BulkCloseResult> {
  const progress = deps.metrics.closeProgress('bulk_close')
  const result = await usingSessionTable(deps.sessionTable, (table) =>
    bulkClose(deps.db, table, filter, options(deps, request, progress.onProgress)),
  )
  deps.metrics.recordClose(result.report, progress.counted())
  if (request.apply) deps.onChange?.()
  return result
}
