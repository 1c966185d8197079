import { randomUUID } from 'node:crypto'
import express, { type Express, type RequestHandler } from 'express'
import type { WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import type { Collection } from '../metrics/collection.js'
import { withDeadline } from '../metrics/deadline.js'
import type { WardenMetrics } from '../metrics/warden-metrics.js'
import type { PoolSnapshot } from '../pool/instrumented-pool.js'
import { redactRequestPath } from '../core/urls.js'
import { adminAuth } from './auth.js'
import { errorHandler, notFound, sendError, ApiError } from './errors.js'
import type { Logger } from './logger.js'
import { clientAddress } from './request.js'
import { mutationsRouter } from './routes/mutations.js'
import { opsRouter } from './routes/ops.js'
import { sessionsRouter } from './routes/sessions.js'
import type { SessionTableResolver } from './session-table.js'

export interface AppDeps {
  /** the pool API requests use (the collection has its own) */
  db: Database
  config: WardenConfig
  /** Warden's registry and event metrics; GET /metrics serves `metrics.registry` */
  metrics: WardenMetrics
  sessionTable: SessionTableResolver
  logger: Logger
  /** refreshed after applied mutations, so the session gauges follow at once */
  collection?: Collection
  /** aborted when the service stops: readiness turns 503 and a running sweep stops after its batch */
  shutdownSignal?: AbortSignal
  /** Warden's own pools, for GET /api/pool */
  pools?: () => PoolSnapshot[]
  /** clock of the mutation rate limit (tests) */
  now?: () => number
  /** more routers under their own paths (the reference chat path under /chat) */
  mounts?: Array<{ path: string; router: RequestHandler }>
}

const REQUEST_ID = /^[\w.:-]{1,64}$/
/** Scrapes and probes arrive every few seconds: logged at debug, so the info log shows operations. */
const QUIET_PATHS = new Set(['/metrics', '/healthz', '/readyz'])

function requestContext(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id')
    req.id = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    res.setHeader('X-Request-Id', req.id)
    const started = performance.now()
    res.on('finish', () => {
      const entry = {
        requestId: req.id,
        method: req.method,
        path: redactRequestPath(req.originalUrl).slice(0, 300),
        status: res.statusCode,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        client: clientAddress(req),
      }
      if (QUIET_PATHS.has(req.path) && res.statusCode < 500) logger.debug(entry, 'request')
      else logger.info(entry, 'request')
    })
    next()
  }
}

/** Concurrent readiness probes share one database round trip instead of taking a connection each. */
function readinessCheck(db: Database, timeoutMs: number): () => Promise<number> {
  let inFlight: Promise<number> | undefined
  return () => {
    inFlight ??= (async () => {
      const started = performance.now()
      try {
        await withDeadline(db.ping(), timeoutMs, undefined, 'PostgreSQL: ')
        return performance.now() - started
      } finally {
        inFlight = undefined
      }
    })()
    return inFlight
  }
}

/**
 * The admin service as an Express app: metrics, health, and the admin API. It does not listen;
 * src/server/listen.ts does (tests listen on port 0).
 */
export function createApp(deps: AppDeps): Express {
  const app = express()
  app.disable('x-powered-by')
  app.set('etag', false)
  const auth = adminAuth(deps.config.server.adminToken, { failuresPerMinute: deps.config.server.authFailuresPerMinute, now: deps.now })
  const ready = readinessCheck(deps.db, deps.config.server.collectTimeout * 1000)
  const started = Date.now()

  app.use(requestContext(deps.logger))

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000) })
  })

  app.get('/readyz', async (_req, res) => {
    if (deps.shutdownSignal?.aborted) return sendError(res, new ApiError(503, 'shutting_down', 'the service is shutting down'))
    try {
      const latencyMs = await ready()
      res.json({ status: 'ready', database: { reachable: true, latencyMs: Math.round(latencyMs * 10) / 10 } })
    } catch (error) {
      sendError(res, new ApiError(503, 'database_unavailable', (error as Error).message))
    }
  })

  // Reads values already in memory: the collectors refresh them in the background.
  app.get('/metrics', async (_req, res) => {
    const body = await deps.metrics.registry.metrics()
    res.setHeader('Content-Type', deps.metrics.registry.contentType)
    res.setHeader('Cache-Control', 'no-store')
    res.send(body)
  })

  app.use('/api', sessionsRouter(deps), opsRouter(deps, auth), mutationsRouter(deps, auth))
  for (const mount of deps.mounts ?? []) app.use(mount.path, mount.router)
  app.use(notFound)
  app.use(errorHandler(deps.logger))
  return app
}
