import { setMaxListeners } from 'node:events'
import { Gauge, type Registry } from 'prom-client'
import type { TargetConfig, WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import type { SessionTable } from '../db/session-table.js'
import { PartialResult, readOnlyWithDeadline, type CollectContext, type Collector } from './collector.js'
import { DeadlineError, withDeadline } from './deadline.js'
import { getOrCreateMetric } from './registry.js'

/** pino-compatible; only what the collection logs. */
export interface CollectionLogger {
  info(details: object, message: string): void
  warn(details: object, message: string): void
  debug(details: object, message: string): void
}

export interface CollectionOptions {
  /** the target's collection pool */
  db: Database
  config: WardenConfig
  target: TargetConfig
  /** the target's session tables, catalog-checked and cached by the caller */
  tables: () => Promise<Array<SessionTable | Error>>
  registry: Registry
  collectors: Collector[]
  logger: CollectionLogger
  /** bounds how many targets collect at once: a round waits for a slot */
  slots?: Slots
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

/** A counting semaphore: at most `size` holders at once, the others queue in order. */
export class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []

  constructor(size: number) {
    this.free = size
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free -= 1
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    try {
      return await work()
    } finally {
      const next = this.waiting.shift()
      if (next) next()
      else this.free += 1
    }
  }
}

interface Deferred {
  done: Promise<void>
  finish: () => void
}

function deferred(): Deferred {
  let finish!: () => void
  const done = new Promise<void>((resolve) => (finish = resolve))
  return { done, finish }
}

/** The gauges every target's collection reports its own health in (shared: labelled by target). */
function healthGauges(registry: Registry) {
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
    getOrCreateMetric(registry, name, Gauge, labelNames, () => new Gauge({ name, help, labelNames, registers: [registry] }))
  return {
    targetUp: gauge('warden_target_up', 'Whether the last collection round of each target reached its PostgreSQL (1) or not (0).', [
      'target',
    ]),
    success: gauge(
      'warden_collector_success',
      'Whether the last run of each metrics collector of each target succeeded within its deadline.',
      ['target', 'collector'],
    ),
    duration: gauge('warden_collector_duration_seconds', 'Duration of the last run of each metrics collector of each target.', [
      'target',
      'collector',
    ]),
    lastSuccess: gauge(
      'warden_collect_last_success_timestamp_seconds',
      'Unix time of the last successful run of each metrics collector of each target (0: none yet): how stale its gauges are.',
      ['target', 'collector'],
    ),
  }
}

/**
 * Refreshes one target's database-derived gauges: in rounds every collectInterval, and at once
 * when a scrape finds them older than server.freshFor (see freshen). A scrape never waits long and
 * never fails because of the database. Rounds may overlap, but a collector never runs twice at
 * once, so one stuck on a lock delays no other collector's refresh; each is isolated (its own
 * deadline, its own success gauge); when the database is down the gauges keep their last values
 * while warden_target_up and the per-collector success and age gauges make the staleness visible.
 */
export class Collection {
  readonly target: string
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly health: ReturnType<typeof healthGauges>
  private readonly states = new Map<string, CollectorState>()
  private readonly inFlight = new Set<string>()
  private readonly lastStarted = new Map<string, number>()
  private readonly stopping = new AbortController()
  private timer: NodeJS.Timeout | undefined
  /** rounds in flight: they may overlap, a collector never runs twice at once */
  private readonly rounds = new Set<Promise<void>>()
  /** each collector's run in flight (until it ends or misses its deadline) */
  private readonly running = new Map<string, Promise<void>>()
  /** each collector's one run queued behind its run in flight, for refresh() */
  private readonly reruns = new Map<string, Promise<void>>()
  private databaseUp: boolean | null = null
  /** when the last round started (performance.now() ms), and how long its ping took */
  private lastRoundStarted = Number.NEGATIVE_INFINITY
  private lastPingMs = 0
  /** rounds that have not finished their ping yet (waiting for a slot, or pinging) */
  private beforePing = 0
  /** the latest round: when each collector's part of it is over (ran, failed or was not due) */
  private latestParts = new Map<string, Deferred>()

  constructor(private readonly options: CollectionOptions) {
    this.target = options.target.name
    this.intervalMs = (options.intervalSeconds ?? options.config.server.collectInterval) * 1000
    this.timeoutMs = (options.timeoutSeconds ?? options.config.server.collectTimeout) * 1000
    this.health = healthGauges(options.registry)
    // every run in flight listens for the stop (and unlistens when it ends): with overlapping
    // rounds a target can have more than Node's default 10 at once, which is not a leak
    setMaxListeners(0, this.stopping.signal)
    const names = new Set<string>()
    for (const collector of options.collectors) {
      if (names.has(collector.name)) throw new Error(`two metrics collectors are named "${collector.name}"`)
      names.add(collector.name)
      this.states.set(collector.name, { name: collector.name, success: null, lastSuccessAt: null, lastError: null, durationMs: null })
      this.health.lastSuccess.set({ target: this.target, collector: collector.name }, 0)
    }
  }

  /** Runs a first round now, then one every interval. */
  start(): void {
    void this.startRound(false)
  }

  /**
   * Runs a round now in which every collector starts after this call (one in flight is run again
   * when it ends), e.g. after a sweep changed the table. Resolves when that round has finished;
   * never rejects.
   */
  refresh(): Promise<void> {
    return this.startRound(true)
  }

  /**
   * What a scrape calls: gauges older than maxAgeMs are refreshed now. Resolves when the
   * collectors that answered within waitMs last time are done with that refresh (the caller
   * bounds the wait); undefined when there is nothing worth waiting for. A broken database or one
   * stuck collector (a locked table) must not cost every scrape the whole wait, nor hold back the
   * other collectors' refresh: nothing is waited for on a target that was down or slow to ping,
   * nor a collector whose last run failed, took longer than the wait, or has been running longer
   * than that now. Those serve their last values, and their age says so.
   */
  freshen(maxAgeMs: number, waitMs: number): Promise<void> | undefined {
    if (this.stopping.signal.aborted) return undefined
    // a round still waiting for its slot or its ping will bring fresh values: do not queue more
    if (performance.now() - this.lastRoundStarted > maxAgeMs && this.beforePing === 0) void this.startRound(false)
    if (this.rounds.size === 0 || this.databaseUp === false || this.lastPingMs > waitMs) return undefined
    const now = performance.now()
    const worthWaitingFor = [...this.states.values()]
      .filter((state) => state.success !== false && (state.durationMs ?? 0) <= waitMs)
      .filter((state) => !this.running.has(state.name) || now - (this.lastStarted.get(state.name) ?? now) <= waitMs)
      .map((state) => this.latestParts.get(state.name)!.done)
    return worthWaitingFor.length === 0 ? undefined : Promise.all(worthWaitingFor).then(() => undefined)
  }

  /** Stops the rounds; collectors in flight are abandoned (their statements end at the deadline). */
  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.stopping.abort(new DeadlineError('the service is stopping'))
    await Promise.all([...this.rounds])
  }

  /**
   * One round: ping, then every due collector. A collector already running is not started again:
   * the round takes that run's result, or, with rerunRunning, runs it once more after it.
   */
  private startRound(rerunRunning: boolean): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve()
    clearTimeout(this.timer)
    this.lastRoundStarted = performance.now()
    const parts = new Map(this.options.collectors.map((collector) => [collector.name, deferred()]))
    this.latestParts = parts
    this.beforePing += 1
    /** the parts that finish with their run (the others finish with the round, whatever happens) */
    const linked = new Set<string>()
    const work = async () => {
      let due: Collector[]
      let up: boolean
      try {
        const now = performance.now()
        due = this.options.collectors.filter((collector) => {
          const last = this.lastStarted.get(collector.name)
          // a little slack, so a collector due "every 60 s" is not pushed to the next round by timer jitter
          const isDue = last === undefined || now - last >= (collector.minIntervalSeconds ?? 0) * 1000 - 250
          if (!isDue) parts.get(collector.name)!.finish()
          return isDue
        })
        up = await this.ping()
      } finally {
        this.beforePing -= 1
      }
      await Promise.all(
        due.map((collector) => {
          const { run, ownRun } = this.runCollector(collector, up, rerunRunning)
          linked.add(collector.name)
          void run.finally(() => parts.get(collector.name)!.finish())
          // another round's run in flight is that round's to wait for: this one (and its slot) moves on
          return ownRun ? run : Promise.resolve()
        }),
      )
    }
    const round: Promise<void> = (this.options.slots ? this.options.slots.run(work) : work()).finally(() => {
      for (const [name, { finish }] of parts) if (!linked.has(name)) finish()
      this.rounds.delete(round)
      if (this.rounds.size === 0 && !this.stopping.signal.aborted) {
        this.timer = setTimeout(() => void this.startRound(false), this.intervalMs)
        this.timer.unref()
      }
    })
    this.rounds.add(round)
    return round
  }

  /** This collector's part of a round: its own new run, or the run already in flight (ownRun false). */
  private runCollector(collector: Collector, databaseUp: boolean, rerunRunning: boolean): { run: Promise<void>; ownRun: boolean } {
    const running = this.running.get(collector.name)
    if (running) {
      if (!rerunRunning) return { run: running, ownRun: false }
      let again = this.reruns.get(collector.name)
      if (!again) {
        again = running.then(() => {
          this.reruns.delete(collector.name)
          return this.runCollector(collector, databaseUp, false).run
        })
        this.reruns.set(collector.name, again)
      }
      return { run: again, ownRun: true }
    }
    const run = this.runOne(collector, databaseUp).finally(() => this.running.delete(collector.name))
    this.running.set(collector.name, run)
    return { run, ownRun: true }
  }

  get pgUpValue(): boolean | null {
    return this.databaseUp
  }

  status(): { target: string; pgUp: boolean | null; collectors: CollectorState[] } {
    return { target: this.target, pgUp: this.databaseUp, collectors: [...this.states.values()].map((state) => ({ ...state })) }
  }

  /** Seconds since each collector last succeeded (Infinity: never): the age of its gauges right now. */
  ages(): Array<{ collector: string; seconds: number }> {
    const now = Date.now()
    return [...this.states.values()].map((state) => ({
      collector: state.name,
      seconds: state.lastSuccessAt ? (now - state.lastSuccessAt.getTime()) / 1000 : Number.POSITIVE_INFINITY,
    }))
  }

  private async ping(): Promise<boolean> {
    const pingStarted = performance.now()
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
      this.lastPingMs = performance.now() - pingStarted
    }
    this.health.targetUp.set({ target: this.target }, up ? 1 : 0)
    if (up && this.databaseUp === false)
      this.options.logger.info({ event: 'pg_up', target: this.target }, 'metrics collection reaches PostgreSQL again')
    if (!up && this.databaseUp !== false)
      this.options.logger.warn(
        { event: 'pg_down', target: this.target, error: reason },
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
      target: this.options.target,
      tables: this.options.tables,
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
      collector.update(result, this.target)
      this.record(collector, undefined, performance.now() - started)
    } catch (error) {
      if (error instanceof PartialResult) collector.update(error.partial, this.target)
      this.record(collector, (error as Error).message, performance.now() - started)
    } finally {
      controller.abort()
    }
  }

  private record(collector: Collector, error: string | undefined, durationMs: number): void {
    const state = this.states.get(collector.name)!
    const labels = { target: this.target, collector: collector.name }
    this.health.success.set(labels, error === undefined ? 1 : 0)
    this.health.duration.set(labels, durationMs / 1000)
    if (error === undefined) {
      if (state.success === false)
        this.options.logger.info({ target: this.target, collector: collector.name }, 'metrics collector recovered')
      state.lastSuccessAt = new Date()
      this.health.lastSuccess.set(labels, state.lastSuccessAt.getTime() / 1000)
    } else {
      // Once per failure streak at warn; a database outage would otherwise log every round.
      const level = state.success === false ? 'debug' : 'warn'
      this.options.logger[level](
        { target: this.target, collector: collector.name, error },
        'metrics collector failed; its gauges keep their last values',
      )
    }
    state.success = error === undefined
    state.lastError = error ?? null
    state.durationMs = durationMs
  }
}
