import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import type pg from 'pg'
import { Registry } from 'prom-client'
import { CHAT_MOUNT_PATH, createChatMount, type ChatMountOptions } from './mount.js'
import type { ChatRouter, ShutdownOptions } from './router.js'
import { CHAT_SERVER_ROUTES } from './routes.js'

export { CHAT_MOUNT_PATH } from './mount.js'

/**
 * A small standalone server for the chat path: `warden chat serve` and `warden loadtest` use
 * it; `warden serve --chat` mounts the same router next to the admin API instead. The router
 * lives under /chat in both, so clients and `loadtest --target-url` work against either.
 */
export interface ChatServerOptions extends ChatMountOptions {
  databaseUrl: string
  registry?: Registry
  host?: string
  port?: number
}

export interface ChatServer {
  url: string
  /** url + CHAT_MOUNT_PATH */
  chatUrl: string
  port: number
  router: ChatRouter
  pool: pg.Pool
  registry: Registry
  /** shutdown: stop accepting, let turns finish (graceMs), close this server's sessions, end the pool */
  close(options?: ShutdownOptions): Promise<{ closedSessions: number }>
}

export async function startChatServer(options: ChatServerOptions): Promise<ChatServer> {
  const registry = options.registry ?? new Registry()
  const mount = createChatMount(options, registry)
  const { router, pool } = mount
  const closeMount = (closeOptions?: ShutdownOptions) => mount.close(closeOptions)

  const app = express()
  app.disable('x-powered-by')
  app.get(CHAT_SERVER_ROUTES.healthz.path, (_req, res) => void res.json({ ok: true }))
  app.get(CHAT_SERVER_ROUTES.metrics.path, async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics())
  })
  app.use(CHAT_MOUNT_PATH, router)
  app.use((req, res) => void res.status(404).json({ error: { code: 'not_found', message: `no route for ${req.method} ${req.path}` } }))

  const host = options.host ?? '127.0.0.1'
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, 4096)
    s.once('listening', () => resolve(s))
    s.once('error', (error) => {
      void pool.end()
      reject(error)
    })
  })
  // Above the longest LLM call, so Node never cuts a slow reply short.
  server.requestTimeout = 0
  server.keepAliveTimeout = 65_000
  const port = (server.address() as AddressInfo).port
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`

  let closing: Promise<{ closedSessions: number }> | undefined
  return {
    url,
    chatUrl: `${url}${CHAT_MOUNT_PATH}`,
    port,
    router,
    pool,
    registry,
    close(closeOptions) {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        const closed = await closeMount(closeOptions)
        server.closeAllConnections()
        await stopped
        return closed
      })()
      return closing
    },
  }
}
