import { createHash } from 'node:crypto'
import cron, { type RunCoordinator, type ScheduledTask, type TaskOptions } from 'node-cron'
import type { WardenConfig } from '../core/config.js'
import { configError } from '../core/errors.js'
import type { Fleet } from '../fleet/fleet.js'
import { sweep, type OperationListener, type Outcome } from '../sessions/operations.js'
import type { SweepResult } from '../sessions/sweep.js'
import { PostgresRunCoordinator } from './run-coordinator.js'

export interface SchedulerHooks {
  /** a slot this replica did not run: another replica claimed it, or the coordinator failed */
  onSkipped?: (job: string, reason: string) => void
  /** how a scheduled sweep of a table ended */
  onSweep?: (target: string, table: string, outcome: Outcome<SweepResult>) => void
}

export interface SchedulerLogger {
  info: (message: string) => void
  warn: (message: string) => void
  error: (message: string | Error, err?: Error) => void
}

export interface SchedulerOptions {
  fleet: Fleet
  config: WardenConfig
  /** this replica's name in scheduled_runs and the audit log, e.g. host:pid */
  owner: string
  /** the sweep events (metrics listen here) */
  listener?: OperationListener
  hooks?: SchedulerHooks
  logger: SchedulerLogger
}

export interface Scheduler {
  jobs: string[]
  coordinators: PostgresRunCoordinator[]
  /** stops scheduling; a sweep in flight finishes its current batch and returns */
  stop: () => Promise<void>
  /** resolves when no job is running */
  idle: () => Promise<void>
}

function validated(key: string, expression: string): string {
  if (!cron.validate(expression))
    throw configError(`${key} = ${JSON.stringify(expression)}: not a valid cron expression (node-cron syntax, 5 or 6 fields)`)
  return expression
}

/** Spread of the claim delay between replicas, per job: long enough to order them, short beside any schedule. */
const SPREAD_MS = 1000

/**
 * Claims a slot after a delay that depends on this replica and the job: every replica fires each
 * slot at the same instant, and without it the fastest one would claim every table's slot. With
 * it, which replica wins differs from table to table, so the sweeps spread over the replicas.
 */
export class SpreadCoordinator implements RunCoordinator {
  constructor(
    private readonly inner: PostgresRunCoordinator,
    private readonly spreadMs = SPREAD_MS,
  ) {}

  async shouldRun(key: string, ttlMs: number): Promise<boolean> {
    // node-cron's key is `<task>:<slot as an ISO timestamp>`: the delay depends on the task, not the slot
    const job = key.replace(/:\d{4}-\d\d-\d\dT[\d:.]+Z$/, '')
    const delay = createHash('sha256').update(`${this.inner.owner}\u0000${job}`).digest().readUInt32BE(0) % this.spreadMs
    await new Promise((resolve) => setTimeout(resolve, delay))
    return this.inner.shouldRun(key, ttlMs)
  }

  onComplete(key: string): Promise<void> {
    return this.inner.onComplete(key)
  }
}

/**
 * Runs the orphan sweep of every table of every target on the configured schedule. node-cron's
 * noOverlap keeps one run per table per process; each target's run coordinator (in that
 * target's database) keeps one run per slot across replicas. A failing run is reported through
 * the hooks and logged; it never escapes into the service.
 */
export function startScheduler(options: SchedulerOptions): Scheduler {
  const { fleet, config, owner, hooks = {}, logger, listener } = options
  const abort = new AbortController()
  const running = new Set<Promise<unknown>>()
  const tasks: ScheduledTask[] = []
  const coordinators = new Map(fleet.targets.map((t) => [t.config.name, new PostgresRunCoordinator(t.db, config.wardenSchema, owner)]))
  const track = <T>(work: Promise<T>): Promise<T> => {
    running.add(work)
    void work.finally(() => running.delete(work)).catch(() => undefined)
    return work
  }

  if (config.scheduler.sweep) {
    const expression = validated('scheduler.sweep', config.scheduler.sweep)
    for (const ref of fleet.tables()) {
      const target = ref.target.name
      const table = ref.table.name
      const base: TaskOptions = {
        noOverlap: true,
        distributed: true,
        runCoordinator: new SpreadCoordinator(coordinators.get(target)!),
        maxRandomDelay: Math.round(config.scheduler.jitter * 1000),
        logger: { info: logger.info, warn: logger.warn, error: logger.error, debug: () => undefined },
      }
      const task = cron.schedule(
        expression,
        () =>
          track(
            (async () => {
              const outcome = await fleet
                .using(ref, (handle) =>
                  sweep(
                    handle,
                    { apply: config.scheduler.sweepApply, command: 'scheduled sweep', actor: `scheduler:${owner}`, signal: abort.signal },
                    listener,
                  ),
                )
                .catch((error: unknown) => ({ status: 'error', error: error as Error }) as const)
              if (outcome.status === 'locked') logger.info(`scheduled sweep of ${target}/${table} skipped: ${outcome.error.message}`)
              if (outcome.status === 'error') logger.error(`scheduled sweep of ${target}/${table} failed: ${outcome.error.message}`)
              hooks.onSweep?.(target, table, outcome)
            })(),
          ),
        { ...base, name: `warden-sweep:${target}/${table}` },
      )
      task.on('execution:skipped', (ctx) => hooks.onSkipped?.(`sweep:${target}/${table}`, ctx.reason ?? 'skipped'))
      tasks.push(task)
    }
  }

  const idle = async () => {
    while (running.size > 0) await Promise.allSettled([...running])
  }
  return {
    jobs: tasks.map((task) => task.name ?? task.id),
    coordinators: [...coordinators.values()],
    idle,
    async stop() {
      abort.abort()
      await Promise.all(tasks.map((task) => Promise.resolve(task.stop())))
      await idle()
      await Promise.all(tasks.map((task) => Promise.resolve(task.destroy())))
    },
  }
}
