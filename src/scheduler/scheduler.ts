import cron, { type ScheduledTask, type TaskOptions } from 'node-cron'
import type { WardenConfig } from '../core/config.js'
import { configError, ExitCode, WardenError } from '../core/errors.js'
import { runChecks, type DoctorReport } from '../checks/run.js'
import type { Database } from '../db/database.js'
import { resolveSessionTable } from '../db/session-table.js'
import { runOptions, sweepOrphans, type SweepResult } from '../sessions/sweep.js'
import { PostgresRunCoordinator } from './run-coordinator.js'

export type SweepOutcome =
  | { result: 'ok'; sweep: SweepResult; durationMs: number }
  /** a manual sweep or another tool held the table's lock: not a failure, the next slot retries */
  | { result: 'locked'; durationMs: number }
  | { result: 'error'; error: Error; durationMs: number }

export interface SchedulerHooks {
  onSweep?: (outcome: SweepOutcome) => void
  onDoctor?: (outcome: { report?: DoctorReport; error?: Error; durationMs: number }) => void
  /** a slot this replica did not run: another replica claimed it, or the coordinator failed */
  onSkipped?: (job: string, reason: string) => void
}

export interface SchedulerLogger {
  info: (message: string) => void
  warn: (message: string) => void
  error: (message: string | Error, err?: Error) => void
}

export interface SchedulerOptions {
  db: Database
  config: WardenConfig
  /** this replica's name in scheduled_runs and the audit log, e.g. host:pid */
  owner: string
  hooks?: SchedulerHooks
  logger: SchedulerLogger
}

export interface Scheduler {
  jobs: string[]
  coordinator: PostgresRunCoordinator
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

/**
 * Runs the orphan sweep (and doctor, for the check metrics) on the configured schedules.
 * node-cron's noOverlap keeps one run per job per process; the PostgreSQL run coordinator keeps
 * one run per slot across replicas. A failing run is reported through the hooks and logged;
 * it never escapes into the service.
 */
export function startScheduler(options: SchedulerOptions): Scheduler {
  const { db, config, owner, hooks = {}, logger } = options
  const coordinator = new PostgresRunCoordinator(db, config.wardenSchema, owner)
  const abort = new AbortController()
  const running = new Set<Promise<unknown>>()
  const tasks: ScheduledTask[] = []
  const base: TaskOptions = {
    noOverlap: true,
    distributed: true,
    runCoordinator: coordinator,
    maxRandomDelay: Math.round(config.scheduler.jitter * 1000),
    logger: { info: logger.info, warn: logger.warn, error: logger.error, debug: () => undefined },
  }
  const track = <T>(work: Promise<T>): Promise<T> => {
    running.add(work)
    void work.finally(() => running.delete(work)).catch(() => undefined)
    return work
  }

  if (config.scheduler.sweep) {
    const task = cron.schedule(
      validated('scheduler.sweep', config.scheduler.sweep),
      () =>
        track(
          (async () => {
            const started = performance.now()
            try {
              const table = await resolveSessionTable(db, config.sessions)
              const sweep = await sweepOrphans(
                db,
                table,
                runOptions(config, {
                  apply: config.scheduler.sweepApply,
                  command: 'scheduled sweep',
                  actor: `scheduler:${owner}`,
                  signal: abort.signal,
                }),
              )
              hooks.onSweep?.({ result: 'ok', sweep, durationMs: performance.now() - started })
            } catch (error) {
              const durationMs = performance.now() - started
              if (error instanceof WardenError && error.exitCode === ExitCode.locked) {
                logger.info(`scheduled sweep skipped: ${error.message}`)
                hooks.onSweep?.({ result: 'locked', durationMs })
              } else {
                logger.error(`scheduled sweep failed: ${(error as Error).message}`)
                hooks.onSweep?.({ result: 'error', error: error as Error, durationMs })
              }
            }
          })(),
        ),
      { ...base, name: `warden-sweep:${config.sessions.table}` },
    )
    task.on('execution:skipped', (ctx) => hooks.onSkipped?.('sweep', ctx.reason ?? 'skipped'))
    tasks.push(task)
  }

  if (config.scheduler.doctor) {
    // Every replica publishes check metrics of its own: not coordinated, read-only, cheap.
    const task = cron.schedule(
      validated('scheduler.doctor', config.scheduler.doctor),
      () =>
        track(
          (async () => {
            const started = performance.now()
            try {
              const report = await runChecks(db, config)
              hooks.onDoctor?.({ report, durationMs: performance.now() - started })
            } catch (error) {
              logger.error(`scheduled doctor failed: ${(error as Error).message}`)
              hooks.onDoctor?.({ error: error as Error, durationMs: performance.now() - started })
            }
          })(),
        ),
      { ...base, distributed: false, runCoordinator: undefined, name: 'warden-doctor' },
    )
    tasks.push(task)
  }

  const idle = async () => {
    while (running.size > 0) await Promise.allSettled([...running])
  }
  return {
    jobs: tasks.map((task) => task.name ?? task.id),
    coordinator,
    idle,
    async stop() {
      abort.abort()
      await Promise.all(tasks.map((task) => Promise.resolve(task.stop())))
      await idle()
      await Promise.all(tasks.map((task) => Promise.resolve(task.destroy())))
    },
  }
}
