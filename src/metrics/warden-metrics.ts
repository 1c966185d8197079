import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { getOrCreateMetric } from './registry.js'
import type { CheckResult, CheckStatus } from '../checks/types.js'
import type { CloseReason } from '../sessions/close-sessions.js'
import type { OperationListener, RunEvent } from '../sessions/operations.js'

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

const STATUS_VALUE: Partial<Record<CheckStatus, number>> = { ok: 0, warn: 1, crit: 2 }

export interface WardenMetricsOptions {
  /**
   * This process runs scheduled sweeps: publish warden_sweep_last_success_timestamp_seconds as 0
   * from the start, so "no sweep ever succeeded" alerts. Without sweeps the series stays absent
   * rather than alerting forever.
   */
  expectSweeps?: boolean
  /** the tables this process sweeps or closes: their series exist (at 0) from the start */
  tables?: Array<{ target: string; table: string }>
}

/** The one definition of warden_sessions_closed_total: the use cases and the chat path all report through it. */
export function sessionsClosedCounter(registry: Registry): Counter<'target' | 'table' | 'reason'> {
  const labelNames = ['target', 'table', 'reason'] as const
  return getOrCreateMetric(
    registry,
    'warden_sessions_closed_total',
    Counter,
    labelNames,
    () =>
      new Counter({
        name: 'warden_sessions_closed_total',
        help: 'Sessions closed by this process, by target, table and reason (orphan_sweep, bulk_close, shutdown, disconnect), counted as each batch commits.',
        labelNames,
        registers: [registry],
      }),
  )
}

const SEVERITY_ORDER: Record<CheckStatus, number> = { ok: 0, skipped: -1, warn: 1, crit: 2, error: -2 }

/**
 * The event-driven metrics of Warden: things this process did (closes, sweeps, check runs),
 * each labelled by target (and table where there is one). Database-derived gauges are not here;
 * the collectors own them. The use cases report through `listener` (see src/sessions/operations.ts).
 */
export class WardenMetrics {
  readonly sessionsClosed: Counter<'target' | 'table' | 'reason'>
  readonly sweepRuns: Counter<'target' | 'table' | 'result'>
  readonly sweepDuration: Histogram<'target' | 'table'>
  readonly sweepLastSuccess: Gauge<'target' | 'table'>
  readonly checkStatus: Gauge<'target' | 'check'>
  readonly checkSuccess: Gauge<'target' | 'check'>
  readonly checkDuration: Gauge<'target' | 'check'>
  /** target → checks that have series */
  private readonly knownChecks = new Map<string, Set<string>>()
  /** what the use cases call */
  readonly listener: OperationListener

  constructor(
    readonly registry: Registry,
    options: WardenMetricsOptions = {},
  ) {
    const registers = [registry]
    this.sessionsClosed = sessionsClosedCounter(registry)
    this.sweepRuns = new Counter({
      name: 'warden_sweep_runs_total',
      help: 'Orphan sweeps run by this process, by target, table and result: ok (dry run or apply), locked (another sweep or close, or a session locking the table), error.',
      labelNames: ['target', 'table', 'result'],
      registers,
    })
    this.sweepDuration = new Histogram({
      name: 'warden_sweep_duration_seconds',
      help: 'Duration of orphan sweeps that ran (result ok or error), by target and table.',
      labelNames: ['target', 'table'],
      buckets: [...SWEEP_DURATION_BUCKETS],
      registers,
    })
    this.sweepLastSuccess = new Gauge({
      name: 'warden_sweep_last_success_timestamp_seconds',
      help: 'Unix time of the last sweep of each table that finished with result ok (0: none yet).',
      labelNames: ['target', 'table'],
      registers,
    })
    this.checkStatus = new Gauge({
      name: 'warden_check_status',
      help: 'Last verdict of each health check of each target: 0 ok, 1 warning, 2 critical (the worst of its tables for session checks). Kept while the check cannot run (see warden_check_success).',
      labelNames: ['target', 'check'],
      registers,
    })
    this.checkSuccess = new Gauge({
      name: 'warden_check_success',
      help: 'Whether the last run of each health check of each target could run (1) or failed (0).',
      labelNames: ['target', 'check'],
      registers,
    })
    this.checkDuration = new Gauge({
      name: 'warden_check_duration_seconds',
      help: 'Duration of the last run of each health check of each target (all its tables together).',
      labelNames: ['target', 'check'],
      registers,
    })
    // Series exist from the start, so rate() and increase() see the first event.
    for (const { target, table } of options.tables ?? []) {
      for (const reason of CLOSE_REASONS) this.sessionsClosed.inc({ target, table, reason }, 0)
      for (const result of SWEEP_RESULTS) this.sweepRuns.inc({ target, table, result }, 0)
      this.sweepDuration.zero({ target, table })
      if (options.expectSweeps) this.sweepLastSuccess.set({ target, table }, 0)
    }
    this.listener = {
      onClosed: ({ target, table, reason, count }) => {
        if (count > 0) this.sessionsClosed.inc({ target, table, reason }, count)
      },
      onRun: (event) => {
        if (event.kind === 'sweep') this.recordSweep(event)
      },
    }
  }

  recordSweep(event: Pick<RunEvent, 'target' | 'table' | 'status' | 'durationMs'>): void {
    const labels = { target: event.target, table: event.table }
    this.sweepRuns.inc({ ...labels, result: event.status })
    if (event.status === 'locked') return
    this.sweepDuration.observe(labels, event.durationMs / 1000)
    if (event.status === 'ok') this.sweepLastSuccess.set(labels, Date.now() / 1000)
  }

  /** One target's check results: per check, the worst of its tables; skipped everywhere means no series. */
  recordChecks(target: string, results: readonly CheckResult[]): void {
    const known = this.knownChecks.get(target) ?? new Set<string>()
    this.knownChecks.set(target, known)
    const byCheck = new Map<string, CheckResult[]>()
    for (const result of results) byCheck.set(result.name, [...(byCheck.get(result.name) ?? []), result])
    for (const [check, runs] of byCheck) {
      const labels = { target, check }
      const ran = runs.filter((run) => run.status !== 'skipped')
      if (ran.length === 0) {
        // not applicable to this deployment: no series rather than a misleading "ok"
        this.checkStatus.remove(labels)
        this.checkSuccess.remove(labels)
        this.checkDuration.remove(labels)
        known.delete(check)
        continue
      }
      known.add(check)
      this.checkDuration.set(labels, ran.reduce((sum, run) => sum + run.durationMs, 0) / 1000)
      this.checkSuccess.set(labels, ran.some((run) => run.status === 'error') ? 0 : 1)
      const worst = ran.reduce((a, b) => (SEVERITY_ORDER[b.status] > SEVERITY_ORDER[a.status] ? b : a))
      const value = STATUS_VALUE[worst.status]
      if (value !== undefined) this.checkStatus.set(labels, value)
    }
  }

  /** A target whose checks could not start at all (database down): every known check failed. */
  recordChecksFailed(target: string): void {
    for (const check of this.knownChecks.get(target) ?? []) this.checkSuccess.set({ target, check }, 0)
  }
}
