import type { Express } from 'express'
import type { Registry } from 'prom-client'
import { redactUrl, type TargetConfig, type WardenConfig } from '../core/config.js'
import { configError, ExitCode, WardenError } from '../core/errors.js'
import { formatDuration } from '../core/duration.js'
import { ORPHAN_AFTER_FLOOR_SECONDS } from '../sessions/sweep.js'
import { Database } from '../db/database.js'
import { auditTableExists } from '../db/queries/audit.js'
import { Collection, Slots } from '../metrics/collection.js'
import { FleetCollection } from '../metrics/fleet-collection.js'
import { Fleet } from '../fleet/fleet.js'
import { mapLimit, TARGET_CONCURRENCY } from '../core/concurrency.js'
import type { CollectorFactory } from '../metrics/collector.js'
import { defaultCollectors } from '../metrics/collectors/index.js'
import { createRegistry } from '../metrics/registry.js'
import { WardenMetrics } from '../metrics/warden-metrics.js'
import { describePool, instrumentPool } from '../pool/instrumented-pool.js'
import { createApp } from './app.js'
import { CHAT_MOUNT_PATH, createChatMount, type ChatMount, type ChatMountOptions } from '../chat/mount.js'
import { startScheduler, type Scheduler } from '../scheduler/scheduler.js'
import { hostname } from 'node:os'
import { listen, type ListeningServer } from './listen.js'
import type { Logger } from './logger.js'

/** A target's collection runs its collectors side by side; two connections are enough for them and the ping. */
const COLLECTOR_POOL_MAX = 2
export const DEFAULT_GRACE_MS = 10_000

export interface ServiceOptions {
  config: WardenConfig
  logger: Logger
  /** database-derived collectors (default: defaultCollectors()); the seam for new topics */
  collectors?: CollectorFactory[]
  /** default: a fresh registry with the process metrics */
  registry?: Registry
  /** clock of the mutation rate limit (tests) */
  now?: () => number
  /**
   * Run the scheduler (config.scheduler: the orphan sweep of every table) in this process. Replicas
   * coordinate through PostgreSQL, so every replica may run it.
   */
  scheduler?: boolean
  /** mount the reference chat path under /chat, with its own instrumented pool */
  chat?: ChatMountOptions & { keepSessions?: boolean; graceMs?: number }
}

export interface Service {
  url: string
  app: Express
  http: ListeningServer
  /** every target's pools and catalog-checked tables */
  fleet: Fleet
  metrics: WardenMetrics
  collection: FleetCollection
  scheduler: Scheduler | null
  chat: ChatMount | null
  /** aborted when close() starts: long work (the scheduler's sweeps too) stops after its current batch */
  shutdownSignal: AbortSignal
  /** stop accepting, finish requests in flight (cut after graceMs), stop collecting, close the pools */
  close: (graceMs?: number) => Promise<{ forced: boolean }>
}

function openDatabase(target: TargetConfig, logger: Logger, registry: Registry, role: 'api' | 'collector'): Database {
  const poolName = role === 'api' ? `warden:${target.name}` : `warden_collector:${target.name}`
  const db = new Database({
    ...target.database,
    poolMax: role === 'api' ? target.database.poolMax : Math.min(COLLECTOR_POOL_MAX, target.database.poolMax),
    onPoolError: (error) => logger.warn({ pool: poolName, target: target.name, error: error.message }, 'idle database connection failed'),
  })
  // Warden's own pools publish db_client_* like any app's. Sweeps hold their connection (and the
  // table's advisory lock) for the whole run by design, so long-hold warnings would only be noise.
  instrumentPool(db.pool, { poolName, registry, logger, longHoldMs: 0, captureStacks: false, detectHeldDuringLlmCall: false })
  return db
}

/**
 * Checks every mapping at start-up where the database answers, so a typo fails fast (exit 78)
 * like every other command; a target that is down does not stop the service, it is resolved later.
 */
async function checkMappings(fleet: Fleet, config: WardenConfig, logger: Logger): Promise<void> {
  await mapLimit(fleet.tables(), TARGET_CONCURRENCY, async (ref) => {
    try {
      await fleet.catalog.get(ref.target.name, ref.table.name)
    } catch (error) {
      if (error instanceof WardenError && error.exitCode === ExitCode.unavailable) {
        logger.warn(
          { target: ref.target.name, table: ref.table.name, error: error.message },
          'target unreachable at start; serving anyway (warden_target_up 0) until it answers',
        )
        return
      }
      throw fleet.targets.length > 1
        ? new WardenError(`target ${ref.target.name}: ${(error as Error).message}`, (error as WardenError).exitCode ?? ExitCode.config)
        : error
    }
  })
  if (!config.server.adminToken) return
  for (const target of fleet.targets) {
    const [audit] = await target.db.rows<{ exists: boolean }>(auditTableExists(config.wardenSchema)).catch(() => [{ exists: true }])
    if (!audit?.exists)
      logger.warn(
        { target: target.config.name, schema: config.wardenSchema },
        'the audit table does not exist: applied sweeps and closes will fail until `warden db migrate` runs',
      )
  }
}

/** Everything `warden serve` runs, wired together; tests start it on port 0. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const { config, logger } = options
  const registry = options.registry ?? createRegistry()
  const scheduling = options.scheduler === true
  const short = config.targets.flatMap((t) =>
    t.sessions.filter((s) => s.orphanAfter < ORPHAN_AFTER_FLOOR_SECONDS).map((s) => `${t.name}/${s.name}`),
  )
  if (scheduling && config.scheduler.sweep && config.scheduler.sweepApply && short.length > 0) {
    throw configError(
      `orphanAfter below ${formatDuration(ORPHAN_AFTER_FLOOR_SECONDS)} (${short.join(', ')}) with scheduler.sweepApply: true would close sessions that only paused; the scheduler does not take --force: use a longer orphanAfter`,
    )
  }
  const tables = config.targets.flatMap((t) => t.sessions.map((s) => ({ target: t.name, table: s.name })))
  // With a scheduled sweep the last-success gauges start at 0, so "never succeeded" alerts.
  const metrics = new WardenMetrics(registry, { expectSweeps: scheduling && config.scheduler.sweep !== null, tables })
  const fleet = new Fleet(config, (target, role) => openDatabase(target, logger, registry, role))
  let chatPoolEnd: (() => Promise<unknown>) | undefined
  const closePools = () => Promise.all([fleet.close(), chatPoolEnd?.().catch(() => undefined)])
  const shutdown = new AbortController()

  try {
    await checkMappings(fleet, config, logger)
  } catch (error) {
    await closePools()
    throw error
  }

  const env = { registry, metrics, config }
  // One collector of each topic for the whole fleet: its metrics are registered once, its series are per target.
  const collectors = (options.collectors ?? defaultCollectors()).map((factory) => factory(env))
  const slots = new Slots(TARGET_CONCURRENCY)
  const collection = new FleetCollection(
    fleet.targets.map(
      (target) =>
        new Collection({
          db: target.collectorDb,
          config,
          target: target.config,
          tables: () => fleet.resolvedTables(target.config.name),
          registry,
          collectors,
          logger,
          slots,
        }),
    ),
    registry,
    config,
  )
  const chatTarget = config.targets[0]!
  const chat = options.chat
    ? createChatMount(
        {
          ...options.chat,
          databaseUrl: options.chat.databaseUrl ?? chatTarget.database.url,
          target: options.chat.target ?? chatTarget.name,
        },
        registry,
      )
    : null
  const app = createApp({
    config,
    fleet,
    metrics,
    logger,
    collection,
    shutdownSignal: shutdown.signal,
    pools: () => fleet.targets.flatMap((target) => [describePool(target.db.pool), describePool(target.collectorDb.pool)]),
    now: options.now,
    mounts: chat ? [{ path: CHAT_MOUNT_PATH, router: chat.router }] : [],
  })
  if (chat) chatPoolEnd = () => chat.pool.end()

  let http: ListeningServer
  try {
    http = await listen(app, config.server.host, config.server.port)
  } catch (error) {
    await closePools()
    const err = error as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
      throw new WardenError(
        `cannot listen on ${config.server.host}:${config.server.port}: ${err.code}`,
        ExitCode.unavailable,
        'pick another --port or --host',
      )
    }
    throw error
  }
  collection.start()
  let scheduler: Scheduler | null = null
  if (scheduling) {
    try {
      scheduler = startScheduler({
        fleet,
        config,
        owner: `${hostname()}:${process.pid}`,
        listener: {
          ...metrics.listener,
          onRun: (event) => {
            metrics.listener.onRun?.(event)
            if (event.status === 'ok' && !event.dryRun) void collection.refresh(event.target)
          },
        },
        logger: {
          info: (message) => logger.info(message),
          warn: (message) => logger.warn(message),
          error: (message, err) => logger.error({ error: err?.message }, String(message instanceof Error ? message.message : message)),
        },
      })
    } catch (error) {
      await Promise.all([http.close(0), collection.stop()])
      await closePools()
      throw error
    }
    logger.info({ jobs: scheduler.jobs, sweepApply: config.scheduler.sweepApply }, 'scheduler started')
  }
  logger.info(
    {
      url: http.url,
      targets: config.targets.map((target) => ({
        name: target.name,
        database: redactUrl(target.database.url),
        tables: target.sessions.map((table) => table.name),
      })),
      mutations: config.server.adminToken ? 'enabled' : 'disabled (no admin token)',
    },
    'warden serve listening',
  )

  let closing: Promise<{ forced: boolean }> | undefined
  return {
    url: http.url,
    app,
    http,
    fleet,
    metrics,
    collection,
    scheduler,
    chat,
    shutdownSignal: shutdown.signal,
    close(graceMs = DEFAULT_GRACE_MS) {
      closing ??= (async () => {
        // Readiness turns 503 and running sweeps stop after their batch in flight; then drain.
        shutdown.abort()
        // The chat path rejects new turns, lets those in flight finish, then closes the sessions it opened.
        const chatClosing = chat?.close({
          graceMs: Math.min(graceMs, options.chat?.graceMs ?? 5000),
          closeSessions: !options.chat?.keepSessions,
        })
        const [forced, , , chatClosed] = await Promise.all([http.close(graceMs), collection.stop(), scheduler?.stop(), chatClosing])
        if (chatClosed) logger.info({ closedSessions: chatClosed.closedSessions }, 'chat path stopped; closed its open sessions')
        chatPoolEnd = undefined
        await closePools()
        return { forced }
      })()
      return closing
    },
  }
}
