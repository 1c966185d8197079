import { Router } from 'express'
import { runTargetChecks, serveCheckDeadline, summarizeResults } from '../../checks/run.js'
import { WardenError } from '../../core/errors.js'
import { probeServer } from '../../probes/server-probe.js'
import type { AdminAuth } from '../auth.js'
import type { AppDeps } from '../deps.js'
import { ApiError } from '../errors.js'
import { hideQueryTexts, hideQuotedQueries } from '../redact.js'
import { checksQuery, parseQuery, poolQuery } from '../validation.js'
import { ADMIN_ROUTES, inRouter } from './table.js'

/**
 * GET /api/targets, GET /api/checks (doctor) and GET /api/pool (the server-side pool probe);
 * query texts for the admin token only.
 */
export function opsRouter(deps: AppDeps, auth: AdminAuth): Router {
  const router = Router()
  const targetOf = (name: string | undefined) => {
    if (name === undefined) return deps.fleet.targets.length === 1 ? deps.fleet.targets[0]! : undefined
    try {
      return deps.fleet.target(name)
    } catch (error) {
      if (error instanceof WardenError) throw new ApiError(400, 'invalid_request', `target: ${error.message}`)
      throw error
    }
  }

  router.get(inRouter(ADMIN_ROUTES.targets), async (_req, res) => {
    const status = new Map((deps.collection?.status() ?? []).map((s) => [s.target, s]))
    const targets = await Promise.all(
      deps.fleet.targets.map(async ({ config }) => {
        const tables = await deps.fleet.resolvedTables(config.name)
        return {
          name: config.name,
          up: status.get(config.name)?.pgUp ?? null,
          tables: config.sessions.map((table, index) => {
            const resolved = tables[index]
            return {
              name: table.name,
              table: table.table,
              orphanAfterSeconds: table.orphanAfter,
              mapping: resolved instanceof Error ? { ok: false, error: resolved.message } : { ok: true },
            }
          }),
          collectors: status.get(config.name)?.collectors ?? [],
        }
      }),
    )
    res.json({ targets })
  })

  router.get(inRouter(ADMIN_ROUTES.checks), async (req, res) => {
    const query = parseQuery(checksQuery, req)
    const targets = query.target === undefined ? deps.fleet.targets : [targetOf(query.target)!]
    const started = performance.now()
    const results = await Promise.all(
      targets.map(async (target) => {
        const checks = await runTargetChecks(
          deps.config,
          { db: target.db, target: target.config, tables: await deps.fleet.resolvedTables(target.config.name) },
          { only: query.check, ...serveCheckDeadline(deps.config) },
        )
        deps.metrics.recordChecks(target.config.name, checks)
        return checks
      }),
    )
    const report = summarizeResults(results.flat(), performance.now() - started)
    const admin = auth.isAdmin(req)
    res.json({
      ...report,
      checks: admin
        ? report.checks
        : report.checks.map((check) => ({ ...hideQueryTexts(check), message: hideQuotedQueries(check.message) })),
      queryTextsShown: admin,
    })
  })

  router.get(inRouter(ADMIN_ROUTES.pool), async (req, res) => {
    const query = parseQuery(poolQuery, req)
    const target = targetOf(query.target)
    if (!target)
      throw new ApiError(400, 'invalid_request', `target: expected one of ${deps.fleet.targets.map((t) => t.config.name).join(', ')}`)
    const probe = await probeServer(target.db, { longTransactionSeconds: query.longTransaction, queryLength: query.queryLength })
    const admin = auth.isAdmin(req)
    res.json({
      target: target.config.name,
      server: admin ? probe : hideQueryTexts(probe),
      queryTextsShown: admin,
      pools: deps.pools?.() ?? [],
    })
  })

  return router
}
