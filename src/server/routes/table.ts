import { CHAT_MOUNT_PATH } from '../../chat/mount.js'
import { CHAT_ROUTES, CHAT_SERVER_ROUTES } from '../../chat/routes.js'
import { MOCK_LLM_ROUTES } from '../../llm/mock-routes.js'

export interface RouteSpec {
  method: 'GET' | 'POST'
  path: string
}

/** Where the admin API routers are mounted. */
export const API_PREFIX = '/api'

/**
 * Every route of the admin service (`warden serve`), by the path a client sends. The app and its
 * routers register exactly these (through `inRouter` for the ones under API_PREFIX), so this is
 * the one list docs/testing.md is checked against (test/entry-points.test.ts).
 */
export const ADMIN_ROUTES = {
  healthz: { method: 'GET', path: '/healthz' },
  readyz: { method: 'GET', path: '/readyz' },
  metrics: { method: 'GET', path: '/metrics' },
  probe: { method: 'GET', path: '/probe' },
  sessions: { method: 'GET', path: `${API_PREFIX}/sessions` },
  sessionStats: { method: 'GET', path: `${API_PREFIX}/sessions/stats` },
  targets: { method: 'GET', path: `${API_PREFIX}/targets` },
  checks: { method: 'GET', path: `${API_PREFIX}/checks` },
  pool: { method: 'GET', path: `${API_PREFIX}/pool` },
  sweeps: { method: 'POST', path: `${API_PREFIX}/sweeps` },
  close: { method: 'POST', path: `${API_PREFIX}/sessions/close` },
} as const satisfies Record<string, RouteSpec>

/** A route's path inside a router mounted at API_PREFIX. */
export const inRouter = (route: RouteSpec): string => route.path.slice(API_PREFIX.length)

export interface EntryRoute extends RouteSpec {
  /** which server answers it */
  server: 'serve' | 'chat' | 'chat serve' | 'mock-llm'
}

/**
 * Every HTTP route Warden serves: the admin service, the chat path (under CHAT_MOUNT_PATH in
 * `serve --chat` and `chat serve`), `chat serve`'s own, and the mock LLM.
 */
export function entryRoutes(): EntryRoute[] {
  return [
    ...Object.values(ADMIN_ROUTES).map((r) => ({ ...r, server: 'serve' as const })),
    ...Object.values(CHAT_ROUTES).map((r) => ({ method: r.method, path: `${CHAT_MOUNT_PATH}${r.path}`, server: 'chat' as const })),
    ...Object.values(CHAT_SERVER_ROUTES).map((r) => ({ ...r, server: 'chat serve' as const })),
    ...Object.values(MOCK_LLM_ROUTES).map((r) => ({ ...r, server: 'mock-llm' as const })),
  ]
}
