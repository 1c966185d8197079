import { Router } from 'express'
import { runChecks } from '../../checks/run.js'
import { probeServer } from '../../probes/server-probe.js'
import type { AppDeps } from '../app.js'
import type { AdminAuth } from '../auth.js'
import { hideQueryTexts, hideQuotedQueries } from '../redact.js'
import { checksQuery, parseQuery, poolQuery } from '../validation.js'

/** GET /api/checks (doctor) and GET /api/pool (the server-side pool probe); query texts for the admin token only. */
export function opsRouter(deps: AppDeps, auth: AdminAuth): Router {
  const router = Router()

  router.get('/checks', async (req, res) => {
    const query = parseQuery(checksQuery, req)
    const report = await runChecks(deps.db, deps.config, { only: query.check, checkTimeoutMs: deps.config.server.collectTimeout * 1000 })
    deps.metrics.recordChecks(report)
    const admin = auth.isAdmin(req)
    res.json({
      ...report,
      checks: admin
        ? report.checks
        : report.checks.map((check) => ({ ...hideQueryTexts(check), message: hideQuotedQueries(check.message) })),
      queryTextsShown: admin,
    })
  })

  router.get('/pool', async (req, res) => {
    const query = parseQuery(poolQuery, req)
    const probe = await probeServer(deps.db, { longTransactionSeconds: query.longTransaction, queryLength: query.queryLength })
    const admin = auth.isAdmin(req)
    res.json({
      server: admin ? probe : hideQueryTexts(probe),
      queryTextsShown: admin,
      pools: deps.pools?.() ?? [],
    })
  })

  return router
}
