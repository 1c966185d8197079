import { randomUUID } from 'node:crypto'
import express, { type Express, type RequestHandler } from 'express'
import type { Database } from '../db/database.js'
import type { AppDeps } from './deps.js'
import { withDeadline } from '../metrics/deadline.js'
import { redactRequestPath } from '../core/urls.js'
import { adminAuth } from './auth.js'
import { errorHandler, notFound, sendError, ApiError } from './errors.js'
import type { Logger } from './logger.js'
import { clientAddress } from './request.js'
import { mutationsRouter } from './routes/mutations.js'
import { opsRouter } from './routes/ops.js'
import { sessionsRouter } from './routes/sessions.js'
import { ADMIN_ROUTES, API_PREFIX } from './routes/table.js'

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
 * The exposition text of one target: the samples labelled target="<name>", with the HELP and
 * TYPE lines of the families that have any. Target names are plain (no quotes or backslashes),
 * so the label can be matched as text.
 */
export function onlyTarget(exposition: string, target: string): string {
  const label = `target="${target}"`
  const out: string[] = []
  let header: string[] = []
  let kept = false
  for (const line of exposition.split('\n')) {
    if (line.startsWith('# HELP ')) {
      header = [line]
      kept = false
    } else if (line.startsWith('# ')) header.push(line)
    else if (line && (line.includes(`{${label}`) || line.includes(`,${label}`))) {
      if (!kept) out.push(...header)
      kept = true
      out.push(line)
    }
  }
  return `${out.join('\n')}\n`
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
  const checks = deps.fleet.targets.map((target) => ({
    name: target.config.name,
    ping: readinessCheck(target.db, deps.config.server.collectTimeout * 1000),
  }))
  const started = Date.now()

  app.use(requestContext(deps.logger))

  app.get(ADMIN_ROUTES.healthz.path, (_req, res) => {
    res.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000) })
  })

  app.get(ADMIN_ROUTES.readyz.path, async (_req, res) => {
    if (deps.shutdownSignal?.aborted) return sendError(res, new ApiError(503, 'shutting_down', 'the service is shutting down'))
    const targets = await Promise.all(
      checks.map(async ({ name, ping }) => {
        try {
          return { name, reachable: true, latencyMs: Math.round((await ping()) * 10) / 10 }
        } catch (error) {
          return { name, reachable: false, error: (error as Error).message }
        }
      }),
    )
    // Ready while any target answers: one database down is a finding to report, not a reason to
    // take Warden out of service (its metrics are what show the outage).
    const reachable = targets.filter((target) => target.reachable)
    if (reachable.length === 0) {
      const first = targets[0] as { error?: string }
      return sendError(
        res,
        new ApiError(503, 'database_unavailable', targets.length === 1 ? (first.error ?? '') : 'no target is reachable'),
      )
    }
    const first = targets[0]!
    res.json({
      status: 'ready',
      database: targets.length === 1 ? { reachable: first.reachable, latencyMs: 'latencyMs' in first ? first.latencyMs : null } : undefined,
      targets,
    })
  })

  // Freshened first (gauges older than server.freshFor, waiting at most server.scrapeWait), then
  // served from memory: a slow or broken target is served with the values it had and their age.
  app.get(ADMIN_ROUTES.metrics.path, async (_req, res) => {
    await deps.collection?.freshen()
    const body = await deps.metrics.registry.metrics()
    res.setHeader('Content-Type', deps.metrics.registry.contentType)
    res.setHeader('Cache-Control', 'no-store')
    res.send(body)
  })

  // Prometheus' multi-target convention (blackbox_exporter, postgres_exporter): one target's series only.
  app.get(ADMIN_ROUTES.probe.path, async (req, res) => {
    const target = typeof req.query.target === 'string' ? req.query.target : undefined
    if (!target || !deps.fleet.targets.some((t) => t.config.name === target)) {
      return sendError(
        res,
        new ApiError(
          400,
          'invalid_request',
          `target: expected one of ${deps.fleet.targets.map((t) => t.config.name).join(', ')}${target === undefined ? '' : `, not ${JSON.stringify(target)}`}`,
        ),
      )
    }
    await deps.collection?.freshen([target])
    res.setHeader('Content-Type', deps.metrics.registry.contentType)
    res.setHeader('Cache-Control', 'no-store')
    res.send(onlyTarget(await deps.metrics.registry.metrics(), target))
  })

  app.use(API_PREFIX, sessionsRouter(deps), opsRouter(deps, auth), mutationsRouter(deps, auth))
  for (const mount of deps.mounts ?? []) app.use(mount.path, mount.router)
  app.use(notFound)
  app.use(errorHandler(deps.logger))
  return app
}
