/**
 * The routes of the reference chat path, relative to where its router is mounted (CHAT_MOUNT_PATH
 * in both `warden serve --chat` and `warden chat serve`). The router registers exactly these, so
 * docs/testing.md can list every route with its tests (test/entry-points.test.ts checks it).
 */
export const CHAT_ROUTES = {
  create: { method: 'POST', path: '/sessions' },
  show: { method: 'GET', path: '/sessions/:id' },
  messages: { method: 'GET', path: '/sessions/:id/messages' },
  end: { method: 'POST', path: '/sessions/:id/end' },
  turn: { method: 'POST', path: '/sessions/:id/messages' },
  stream: { method: 'POST', path: '/sessions/:id/messages/stream' },
} as const

/** `warden chat serve`'s own routes, beside the mounted chat path. */
export const CHAT_SERVER_ROUTES = {
  healthz: { method: 'GET', path: '/healthz' },
  metrics: { method: 'GET', path: '/metrics' },
} as const
