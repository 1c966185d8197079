import { Gauge, type Registry } from 'prom-client'
import type { WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import type { SessionTable } from '../db/session-table.js'
import { readOnlyWithDeadline, type CollectContext, type Collector } from './collector.js'
import { DeadlineError, withDeadline } from './deadline.js'

/** pino-compatible; only what the collection logs. */
export interface CollectionLogger {
  info(details: object, message: string): void
  warn(details: object, message: string): void
  debug(details: object, message: string): void
}

export interface CollectionOptions {
  db: Database
  config: WardenConfig
  sessionTable: () => Promise<SessionTable>
  registry: Registry
  collectors: Collector[]
  logger: CollectionLogger
  /** seconds between rounds (default server.collectInterval) */
  intervalSeconds?: number
  /** deadline of the database ping and of each collector (default server.collectTimeout) */
  timeoutSeconds?: number
}

export interface CollectorState {
  name: string
  /** null until the first run */
  success: boolean | null
  lastSuccessAt: Date | null
  lastError: string | null
  durationMs: number | null
}

/**
 * Refreshes the database-derived gauges in the background, so that a scrape only reads values
 * already in memory: it never waits on the database and never fails because of it. Rounds never
 * overlap; each collector is isolated (its own deadline, its own success gauge), and when the
 * database is down the gauges keep their last values while warden_pg_up and the per-collector
 * success and last-success gauges make the staleness visible.
 */
export class Collection {
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly pgUp: Gauge
  private readonly success: Gauge<'collector'>
  private readonly duration: Gauge<'collector'>
  private readonly lastSuccess: Gauge<'collector'>
  private readonly states = new Map<string, CollectorState>()
  private readonly inFlight = new Set<string>()
  private readonly lastStarted = new Map<string, number>()
  private readonly stopping = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private current: Promise<void> | undefined
  private queued: Promise<void> | undefined
  private databaseUp: boolean | null = null

  constructor(private readonly options: CollectionOptions) {
    this.intervalMs = (options.intervalSeconds ?? options.config.server.collectInterval) * 1000
    this.timeoutMs = (options.timeoutSeconds ?? options.config.server.collectTimeout) * 1000
    const registers = [options.registry]
    this.pgUp = new Gauge({ name: 'warden_pg_up', help: 'Whether the last collection round reached PostgreSQL (1) or not (0).', registers })
    this.success = new Gauge({
      name: 'warden_collector_success',
      help: 'Whether the last run of each metrics collector succeeded within its deadline.',
      labelNames: ['collector'],
      registers,
    })
    this.duration = new Gauge({
      name: 'warden_collector_duration_seconds',
      help: 'Duration of the last run of each metrics collector.',
      labelNames: ['collector'],
      registers,
    })
    this.lastSuccess = new Gauge({
      name: 'warden_collect_last_success_timestamp_seconds',
      help: 'Unix time of the last successful run of each metrics collector (0: none yet): how stale its gauges are.',
      labelNames: ['collector'],
      registers,
    })
    const names = new Set<string>()
    for (const collector of options.collectors) {
      if (names.has(collector.name)) throw new Error(`two metrics collectors are named "${collector.name}"`)
      names.add(collector.name)
      this.states.set(collector.name, { name: collector.name, success: null, lastSuccessAt: null, lastError: null, durationMs: null })
      this.lastSuccess.set({ collector: collector.name }, 0)
    }
  }

  /** Runs a first round now, then one every interval. */
  start(): void {
    void this.refresh()
  }

  /**
   * Runs a round now (after the one in flight, if any), e.g. after a sweep changed the table.
   * Resolves when that round has finished; never rejects.
   */
  refresh(): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve()
    if (this.current) {
      this.queued ??= this.current.then(() => {
        this.queued = undefined
        return this.refresh()
      })
      return this.queued
    }
    clearTimeout(this.timer)
    this.current = this.round().finally(() => {
      this.current = undefined
      if (!this.queued && !this.stopping.signal.aborted) {
        this.timer = setTimeout(() => void this.refresh(), this.intervalMs)
        this.timer.unref()
      }
    })
    return this.current
  }

  /** Stops the rounds; collectors in flight are abandoned (their statements end at the deadline). */
  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.stopping.abort(new DeadlineError('the service is stopping'))
    await this.current
  }

  get pgUpValue(): boolean | null {
    return this.databaseUp
  }

  status(): { pgUp: boolean | null; collectors: CollectorState[] } {
    return { pgUp: this.databaseUp, collectors: [...this.states.values()].map((state) => ({ ...state })) }
  }

  private async round(): Promise<void> {
    const now = performance.now()
    const due = this.options.collectors.filter((collector) => {
      const last = this.lastStarted.get(collector.name)
      // a little slack, so a collector due "every 60 s" is not pushed to the next round by timer jitter
      return last === undefined || now - last >= (collector.minIntervalSeconds ?? 0) * 1000 - 250
    })
    const up = await this.ping()
    await Promise.all(due.map((collector) => this.runOne(collector, up)))
  }

  private async ping(): Promise<boolean> {
    const controller = this.linkedController()
    let up = true
    let reason: string | undefined
    try {
      await withDeadline(this.options.db.ping(), this.timeoutMs, controller)
    } catch (error) {
      up = false
      reason = (error as Error).message
    } finally {
      controller.abort()
    }
    this.pgUp.set(up ? 1 : 0)
    if (up && this.databaseUp === false) this.options.logger.info({ event: 'pg_up' }, 'metrics collection reaches PostgreSQL again')
    if (!up && this.databaseUp !== false)
      this.options.logger.warn(
        { event: 'pg_down', error: reason },
        'metrics collection cannot reach PostgreSQL; gauges keep their last values',
      )
    this.databaseUp = up
    return up
  }

  private linkedController(): AbortController {
    const controller = new AbortController()
    if (this.stopping.signal.aborted) controller.abort(this.stopping.signal.reason)
    else
      this.stopping.signal.addEventListener('abort', () => controller.abort(this.stopping.signal.reason), {
        once: true,
        signal: controller.signal,
      })
    return controller
  }

  private async runOne(collector: Collector, databaseUp: boolean): Promise<void> {
    if (collector.needsDatabase !== false && !databaseUp) return this.record(collector, 'database unreachable', 0)
    // A run abandoned at its deadline may still hold a connection: do not pile a second one on it.
    if (this.inFlight.has(collector.name)) return this.record(collector, 'the previous run is still in flight', 0)
    const started = performance.now()
    this.lastStarted.set(collector.name, started)
    const timeoutMs = (collector.timeoutSeconds ?? this.timeoutMs / 1000) * 1000
    const controller = this.linkedController()
    const ctx: CollectContext = {
      db: this.options.db,
      config: this.options.config,
      sessionTable: this.options.sessionTable,
      signal: controller.signal,
      remainingMs: () => Math.max(1, started + timeoutMs - performance.now()),
      readOnly: (work) => readOnlyWithDeadline(this.options.db, ctx, work),
    }
    this.inFlight.add(collector.name)
    const work = Promise.resolve()
      .then(() => collector.collect(ctx))
      .finally(() => this.inFlight.delete(collector.name))
    try {
      const result = await withDeadline(work, timeoutMs, controller)
      collector.update(result)
      this.record(collector, undefined, performance.now() - started)
    } catch (error) {
      this.record(collector, (error as Error).message, performance.now() - started)
    } finally {
      controller.abort()
    }
  }

  private record(collector: Collector, error: string | undefined, durationMs: number): void {
    const state = this.states.get(collector.name)!
    const labels = { collector: collector.name }
    this.success.set(labels, error === undefined ? 1 : 0)
    this.duration.set(labels, durationMs / 1000)
    if (error === undefined) {
      if (state.success === false) this.options.logger.info({ collector: collector.name }, 'metrics collector recovered')
      state.lastSuccessAt = new Date()
      this.lastSuccess.set(labels, state.lastSuccessAt.getTime() / 1000)
    } else {
      // Once per failure streak at warn; a database outage would otherwise log every round.
      const level = state.success === false ? 'debug' : 'warn'
      this.options.logger[level]({ collector: collector.name, error }, 'metrics collector failed; its gauges keep their last values')
    }
    state.success = error === undefined
    state.lastError = error ?? null
    state.durationMs = durationMs
  }
}
