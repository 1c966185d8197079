import { Router } from 'express'
import { list, stats } from '../../sessions/operations.js'
import type { AppDeps } from '../deps.js'
import { listQuery, MAX_OFFSET, parseQuery, statsQuery } from '../validation.js'
import { selectRef } from './select.js'
import { ADMIN_ROUTES, inRouter } from './table.js'

/** GET /api/sessions and /api/sessions/stats: the JSON of `sessions list` and `sessions stats`, with paging. */
export function sessionsRouter(deps: AppDeps): Router {
  const router = Router()

  router.get(inRouter(ADMIN_ROUTES.sessions), async (req, res) => {
    const query = parseQuery(listQuery, req)
    const ref = selectRef(deps, query)
    const page = await deps.fleet.using(ref, (handle) =>
      list(handle, { state: query.state, groups: query.group, sinceSeconds: query.since, limit: query.limit, offset: query.offset }),
    )
    const end = query.offset + page.rows.length
    res.json({
      target: ref.target.name,
      table: ref.table.name,
      state: query.state,
      count: page.rows.length,
      total: page.total,
      hasMore: page.hasMore,
      limit: query.limit,
      offset: query.offset,
      nextOffset: page.hasMore && end <= MAX_OFFSET ? end : null,
      sessions: page.rows,
    })
  })

  router.get(inRouter(ADMIN_ROUTES.sessionStats), async (req, res) => {
    const query = parseQuery(statsQuery, req)
    const ref = selectRef(deps, query)
    const rows = await deps.fleet.using(ref, (handle) => stats(handle, { days: query.days, byGroup: query.byGroup }))
    res.json({ target: ref.target.name, table: ref.table.name, days: query.days, byGroup: query.byGroup, rows })
  })

  return router
}
