import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { getOrCreateMetric } from './registry.js'
import type { DoctorReport } from '../checks/run.js'
import type { CheckStatus } from '../checks/types.js'
import type { CloseReason, CloseReport } from '../sessions/close-sessions.js'

const CLOSE_REASONS: readonly CloseReason[] = ['orphan_sweep', 'bulk_close', 'shutdown', 'disconnect']
export const SWEEP_RESULTS = ['ok', 'locked', 'error'] as const
export type SweepRunResult = (typeof SWEEP_RESULTS)[number]

/**
 * Sweeps take milliseconds on a clean table and minutes on a backlog of millions of orphans
 * (5000 rows a batch); the buckets cover both ends, up to about 20 minutes.
 */
export const SWEEP_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280,
])

/**
 * How one sweep ended. The same shape as the scheduler's `onSweep` hook, so
 * `hooks: { onSweep: (o) => metrics.recordSweep(o) }` is all the wiring it needs.
 */
export type SweepOutcome =
  | { result: 'ok'; sweep: { report: CloseReport }; durationMs: number }
  /** another sweep or close held the table's lock */
  | { result: 'locked'; durationMs: number }
  | { result: 'error'; error: Error; durationMs: number }

/** The scheduler's `onDoctor` hook shape: a report, or why doctor could not run at all. */
export interface DoctorOutcome {
  report?: DoctorReport
  error?: Error
  durationMs: number
}

const STATUS_VALUE: Partial<Record<CheckStatus, number>> = { ok: 0, warn: 1, crit: 2 }

export interface WardenMetricsOptions {
  /**
   * This process runs scheduled sweeps: publish warden_sweep_last_success_timestamp_seconds as 0
   * from the start, so "no sweep ever succeeded" alerts. Without sweeps the series stays absent
   * rather than alerting forever.
   */
  expectSweeps?: boolean
}

/**
 * The event-driven metrics of Warden: things this process did (closes, sweeps, check runs).
 * Database-derived gauges are not here; the collectors own them (see collection.ts).
 * The scheduler, the admin API and the chat path all report through these methods.
 */
export class WardenMetrics {
  readonly sessionsClosed: Counter<'reason'>
  readonly sweepRuns: Counter<'result'>
  readonly sweepDuration: Histogram
  readonly sweepLastSuccess: Gauge
  readonly checkStatus: Gauge<'check'>
  readonly checkSuccess: Gauge<'check'>
  readonly checkDuration: Gauge<'check'>
  private readonly knownChecks = new Set<string>()

  constructor(
    readonly registry: Registry,
    options: WardenMetricsOptions = {},
  ) {
    const registers = [registry]
    // Shared with the chat path (disconnect, shutdown closes), which may have registered it first.
    this.sessionsClosed = getOrCreateMetric(
      registry,
      'warden_sessions_closed_total',
      Counter,
      ['reason'],
      () =>
        new Counter({
          name: 'warden_sessions_closed_total',
          help: 'Sessions closed by this process, by reason (orphan_sweep, bulk_close, shutdown, disconnect).',
          labelNames: ['reason'],
          registers,
        }),
    )
    this.sweepRuns = new Counter({
      name: 'warden_sweep_runs_total',
      help: 'Orphan sweeps run by this process, by result: ok (dry run or apply), locked (another sweep or close held the table), error.',
      labelNames: ['result'],
      registers,
    })
    this.sweepDuration = new Histogram({
      name: 'warden_sweep_duration_seconds',
      help: 'Duration of orphan sweeps that ran (result ok or error).',
      buckets: [...SWEEP_DURATION_BUCKETS],
      registers,
    })
    this.sweepLastSuccess = new Gauge({
      name: 'warden_sweep_last_success_timestamp_seconds',
      help: 'Unix time of the last sweep that finished with result ok (0: none yet).',
      registers,
    })
    this.checkStatus = new Gauge({
      name: 'warden_check_status',
      help: 'Last verdict of each health check: 0 ok, 1 warning, 2 critical. Kept while the check cannot run (see warden_check_success).',
      labelNames: ['check'],
      registers,
    })
    this.checkSuccess = new Gauge({
      name: 'warden_check_success',
      help: 'Whether the last run of each health check could run (1) or failed (0).',
      labelNames: ['check'],
      registers,
    })
    this.checkDuration = new Gauge({
      name: 'warden_check_duration_seconds',
      help: 'Duration of the last run of each health check.',
      labelNames: ['check'],
      registers,
    })
    // Series exist from the start, so rate() and increase() see the first event.
    for (const reason of CLOSE_REASONS) this.sessionsClosed.inc({ reason }, 0)
    for (const result of SWEEP_RESULTS) this.sweepRuns.inc({ result }, 0)
    if (options.expectSweeps) this.sweepLastSuccess.set(0)
  }

  /**
   * Counts what an applied close or sweep closed (dry runs close nothing). `alreadyCounted`:
   * what closeProgress() counted batch by batch during the run.
   */
  recordClose(report: Pick<CloseReport, 'dryRun' | 'reason' | 'closed'>, alreadyCounted = 0): void {
    const closed = report.dryRun ? 0 : report.closed - alreadyCounted
    if (closed > 0) this.sessionsClosed.inc({ reason: report.reason }, closed)
  }

  /**
   * An onProgress callback for closeSessions/sweepOrphans that counts each batch as it commits,
   * so a run that fails half-way still counts the sessions it did close. Pass `counted()` to
   * recordClose/recordSweep at the end.
   */
  closeProgress(reason: CloseReason): { onProgress: (progress: { closed: number }) => void; counted: () => number } {
    let counted = 0
    return {
      onProgress: ({ closed }) => {
        if (closed > counted) this.sessionsClosed.inc({ reason }, closed - counted)
        counted = Math.max(counted, closed)
      },
      counted: () => counted,
    }
  }

  recordSweep(outcome: SweepOutcome, alreadyCounted = 0): void {
    this.sweepRuns.inc({ result: outcome.result })
    if (outcome.result === 'locked') return
    this.sweepDuration.observe(outcome.durationMs / 1000)
    if (outcome.result === 'ok') {
      this.recordClose(outcome.sweep.report, alreadyCounted)
      this.sweepLastSuccess.set(Date.now() / 1000)
    }
  }

  recordChecks(report: DoctorReport): void {
    for (const check of report.checks) {
      const labels = { check: check.name }
      if (check.status === 'skipped') {
        // not applicable to this deployment: no series rather than a misleading "ok"
        this.checkStatus.remove(labels)
        this.checkSuccess.remove(labels)
        this.checkDuration.remove(labels)
        this.knownChecks.delete(check.name)
        continue
      }
      this.knownChecks.add(check.name)
      this.checkDuration.set(labels, check.durationMs / 1000)
      this.checkSuccess.set(labels, check.status === 'error' ? 0 : 1)
      const value = STATUS_VALUE[check.status]
      if (value !== undefined) this.checkStatus.set(labels, value)
    }
  }

  /** A doctor run: its report, or, when it could not start (database down), every known check failed. */
  recordDoctor(outcome: DoctorOutcome): void {
    if (outcome.report) {
      this.recordChecks(outcome.report)
      return
    }
    for (const check of this.knownChecks) this.checkSuccess.set({ check }, 0)
  }
}
