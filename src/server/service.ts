import type { Express } from 'express'
import type { Registry } from 'prom-client'
import { redactUrl, type WardenConfig } from '../core/config.js'
import { configError, ExitCode, WardenError } from '../core/errors.js'
import { formatDuration } from '../core/duration.js'
import { ORPHAN_AFTER_FLOOR_SECONDS } from '../sessions/sweep.js'
import { Database } from '../db/database.js'
import { auditTableExists } from '../db/queries/audit.js'
import { Collection } from '../metrics/collection.js'
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
import { sessionTableResolver, type SessionTableResolver } from './session-table.js'

/** The collection runs its collectors side by side; two connections are enough for them and the ping. */
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
   * Run the scheduler (config.scheduler: orphan sweep, doctor) in this process. Replicas
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
  /** API requests */
  db: Database
  /** the metrics collection's own pool */
  collectorDb: Database
  metrics: WardenMetrics
  collection: Collection
  sessionTable: SessionTableResolver
  scheduler: Scheduler | null
  chat: ChatMount | null
  /** aborted when close() starts: long work (the scheduler's sweeps too) stops after its current batch */
  shutdownSignal: AbortSignal
  /** stop accepting, finish requests in flight (cut after graceMs), stop collecting, close the pools */
  close: (graceMs?: number) => Promise<{ forced: boolean }>
}

function openDatabase(config: WardenConfig, logger: Logger, registry: Registry, poolName: string, poolMax: number): Database {
  const db = new Database({
    ...config.database,
    poolMax,
    onPoolError: (error) => logger.warn({ pool: poolName, error: error.message }, 'idle database connection failed'),
  })
  // Warden's own pools publish db_client_* like any app's. Sweeps hold their connection (and the
  // table's advisory lock) for the whole run by design, so long-hold warnings would only be noise.
  instrumentPool(db.pool, { poolName, registry, logger, longHoldMs: 0, captureStacks: false, detectHeldDuringLlmCall: false })
  return db
}

/**
 * Checks the mapping at start-up when the database answers, so a typo fails fast (exit 78) like
 * every other command; when the database is down the service starts anyway and resolves later.
 */
async function checkMapping(db: Database, config: WardenConfig, sessionTable: SessionTableResolver, logger: Logger): Promise<void> {
  try {
    await sessionTable()
  } catch (error) {
    if (error instanceof WardenError && error.exitCode === ExitCode.unavailable) {
      logger.warn({ error: error.message }, 'database unreachable at start; serving anyway (readyz 503, warden_pg_up 0) until it answers')
      return
    }
    throw error
  }
  if (config.server.adminToken) {
    const [audit] = await db.rows<{ exists: boolean }>(auditTableExists(config.wardenSchema)).catch(() => [{ exists: true }])
    if (!audit?.exists)
      logger.warn(
        { schema: config.wardenSchema },
        'the audit table does not exist: applied sweeps and closes will fail until `warden db migrate` runs',
      )
  }
}

/** Everything `warden serve` runs, wired together; tests start it on port 0. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const { config, logger } = options
  const registry = options.registry ?? createRegistry()
  const scheduling = options.scheduler === true
  if (scheduling && config.scheduler.sweep && config.scheduler.sweepApply && config.sessions.orphanAfter < ORPHAN_AFTER_FLOOR_SECONDS) {
    throw configError(
      `sessions.orphanAfter = ${formatDuration(config.sessions.orphanAfter)} with scheduler.sweepApply: true would close sessions that paused for less than ${formatDuration(ORPHAN_AFTER_FLOOR_SECONDS)}; the scheduler does not take --force: use a longer orphanAfter`,
    )
  }
  // With a scheduled sweep the last-success gauge starts at 0, so "never succeeded" alerts.
  const metrics = new WardenMetrics(registry, { expectSweeps: scheduling && config.scheduler.sweep !== null })
  const db = openDatabase(config, logger, registry, 'warden', config.database.poolMax)
  const collectorDb = openDatabase(config, logger, registry, 'warden_collector', Math.min(COLLECTOR_POOL_MAX, config.database.poolMax))
  let chatPoolEnd: (() => Promise<unknown>) | undefined
  const closePools = () =>
    Promise.all([db.close().catch(() => undefined), collectorDb.close().catch(() => undefined), chatPoolEnd?.().catch(() => undefined)])
  const sessionTable = sessionTableResolver(db, config.sessions)
  const shutdown = new AbortController()

  try {
    await checkMapping(db, config, sessionTable, logger)
  } catch (error) {
    await closePools()
    throw error
  }

  const env = { registry, metrics, config }
  const collection = new Collection({
    db: collectorDb,
    config,
    sessionTable,
    registry,
    // A scheduled doctor publishes the check metrics; collecting them too would run every check twice.
    collectors: (options.collectors ?? defaultCollectors({ checks: !(scheduling && config.scheduler.doctor) })).map((factory) =>
      factory(env),
    ),
    logger,
  })
  const chat = options.chat
    ? createChatMount({ ...options.chat, databaseUrl: options.chat.databaseUrl ?? config.database.url }, registry)
    : null
  const app = createApp({
    db,
    config,
    metrics,
    sessionTable,
    logger,
    collection,
    shutdownSignal: shutdown.signal,
    pools: () => [describePool(db.pool), describePool(collectorDb.pool)],
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
        db,
        config,
        owner: `${hostname()}:${process.pid}`,
        logger: {
          info: (message) => logger.info(message),
          warn: (message) => logger.warn(message),
          error: (message, err) => logger.error({ error: err?.message }, String(message instanceof Error ? message.message : message)),
        },
        hooks: { onSweep: (outcome) => metrics.recordSweep(outcome), onDoctor: (outcome) => metrics.recordDoctor(outcome) },
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
      database: redactUrl(config.database.url),
      table: config.sessions.table,
      mutations: config.server.adminToken ? 'enabled' : 'disabled (no admin token)',
    },
    'warden serve listening',
  )

  let closing: Promise<{ forced: boolean }> | undefined
  return {
    url: http.url,
    app,
    http,
    db,
    collectorDb,
    metrics,
    collection,
    sessionTable,
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
