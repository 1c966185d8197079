import express, { Router } from 'express'
import type { AppDeps } from '../app.js'
import type { AdminAuth } from '../auth.js'
import { closeWithMetrics, sweepWithMetrics, type OperationDeps } from '../operations.js'
import { mutationBudget } from '../rate-limit.js'
import { apiActor } from '../request.js'
import { closeBody, parseBody, sweepBody } from '../validation.js'

/**
 * POST /api/sweeps and POST /api/sessions/close. Order matters: authentication first (a stranger
 * gets 401/403 without the body even being read), then the body, then the shared rate limit (an
 * invalid body does not spend it).
 * Both are dry runs unless {"apply": true}; every run, dry or not, writes an audit row.
 */
export function mutationsRouter(deps: AppDeps, auth: AdminAuth): Router {
  const router = Router()
  const guard = [auth.require, express.json({ limit: '1mb' })]
  const budget = mutationBudget(deps.config.server.mutationsPerMinute, deps.now)
  const operations: OperationDeps = {
    db: deps.db,
    config: deps.config,
    sessionTable: deps.sessionTable,
    metrics: deps.metrics,
    signal: deps.shutdownSignal,
    onChange: () => void deps.collection?.refresh(),
  }

  router.post('/sweeps', ...guard, async (req, res) => {
    const body = parseBody(sweepBody, req)
    budget.spend()
    const { json } = await sweepWithMetrics(operations, { ...body, actor: apiActor(req), command: 'api sweep' })
    res.json(json)
  })

  router.post('/sessions/close', ...guard, async (req, res) => {
    const { filter, ...body } = parseBody(closeBody, req)
    budget.spend()
    const { json } = await closeWithMetrics(operations, filter, { ...body, actor: apiActor(req), command: 'api sessions close' })
    res.json(json)
  })

  return router
}
