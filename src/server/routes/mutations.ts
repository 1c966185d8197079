import express, { Router } from 'express'
import { close, sweep, unwrap, type OperationListener } from '../../sessions/operations.js'
import type { AdminAuth } from '../auth.js'
import type { AppDeps } from '../deps.js'
import { mutationBudget } from '../rate-limit.js'
import { apiActor } from '../request.js'
import { closeBody, parseBody, sweepBody } from '../validation.js'
import { selectRef } from './select.js'
import { ADMIN_ROUTES, inRouter } from './table.js'

/**
 * POST /api/sweeps and POST /api/sessions/close. Order matters: authentication first (a stranger
 * gets 401/403 without the body even being read), then the body, then the shared rate limit (an
 * invalid body does not spend it). Both are dry runs unless {"apply": true}; every run, dry or
 * not, writes an audit row; with several tables, {"target", "table"} say which.
 */
export function mutationsRouter(deps: AppDeps, auth: AdminAuth): Router {
  const router = Router()
  const guard = [auth.require, express.json({ limit: '1mb' })]
  const budget = mutationBudget(deps.config.server.mutationsPerMinute, deps.now)
  const listener: OperationListener = {
    onClosed: (event) => deps.metrics.listener.onClosed?.(event),
    onRun: (event) => {
      deps.metrics.listener.onRun?.(event)
      // the session gauges follow at once, rather than at the next round
      if (event.status === 'ok' && !event.dryRun) void deps.collection?.refresh(event.target)
    },
  }
  const settings = (
    req: express.Request,
    body: { apply: boolean; force: boolean; batchSize?: number; maxRows?: number; sample: number },
    command: string,
  ) => ({
    apply: body.apply,
    force: body.force,
    batchSize: body.batchSize,
    maxRows: body.maxRows,
    sample: body.sample,
    actor: apiActor(req),
    command,
    signal: deps.shutdownSignal,
  })

  router.post(inRouter(ADMIN_ROUTES.sweeps), ...guard, async (req, res) => {
    const body = parseBody(sweepBody, req)
    const ref = selectRef(deps, body)
    budget.spend()
    const { json } = await deps.fleet.using(ref, async (handle) => unwrap(await sweep(handle, settings(req, body, 'api sweep'), listener)))
    res.json(json)
  })

  router.post(inRouter(ADMIN_ROUTES.close), ...guard, async (req, res) => {
    const { filter, ...body } = parseBody(closeBody, req)
    const ref = selectRef(deps, body)
    budget.spend()
    const { json } = await deps.fleet.using(ref, async (handle) =>
      unwrap(await close(handle, filter, settings(req, body, 'api sessions close'), listener)),
    )
    res.json(json)
  })

  return router
}
