import { Router } from 'express'
import type { SessionFilter, SessionOrder } from '../../db/queries/sessions.js'
import { listSessionRows, sessionDailyStats } from '../../sessions/inspect.js'
import type { AppDeps } from '../app.js'
import { usingSessionTable } from '../session-table.js'
import { listQuery, MAX_OFFSET, parseQuery, statsQuery } from '../validation.js'

/** GET /api/sessions and /api/sessions/stats: the JSON of `sessions list` and `sessions stats`, with paging. */
export function sessionsRouter(deps: AppDeps): Router {
  const router = Router()

  router.get('/sessions', async (req, res) => {
    const query = parseQuery(listQuery, req)
    const body = await usingSessionTable(deps.sessionTable, async (table) => {
      // the same states as `warden sessions list --state`
      const filters: Record<typeof query.state, SessionFilter> = {
        active: { open: true },
        orphaned: { open: true, silentForSeconds: table.config.orphanAfter },
        recent: { startedWithinSeconds: query.since },
        closed: { open: false },
        all: {},
      }
      const order: SessionOrder = query.state === 'active' || query.state === 'orphaned' ? 'silent' : 'newest'
      const end = query.offset + query.limit
      // one row past the page tells whether there is a next one
      const rows = await listSessionRows(deps.db, table, { ...filters[query.state], groups: query.group }, end + 1, order)
      const sessions = rows.slice(query.offset, end)
      return {
        state: query.state,
        count: sessions.length,
        limit: query.limit,
        offset: query.offset,
        nextOffset: rows.length > end && end <= MAX_OFFSET ? end : null,
        sessions,
      }
    })
    res.json(body)
  })

  router.get('/sessions/stats', async (req, res) => {
    const query = parseQuery(statsQuery, req)
    const rows = await usingSessionTable(deps.sessionTable, (table) => sessionDailyStats(deps.db, table, query.days, query.byGroup))
    res.json({ days: query.days, byGroup: query.byGroup, rows })
  })

  return router
}
