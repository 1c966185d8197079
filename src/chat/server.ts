import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import type pg from 'pg'
import { Registry } from 'prom-client'
import { createInstrumentedPool, type PoolLogger } from '../pool/instrumented-pool.js'
import { anthropicFactory, type LlmSettings } from './llm.js'
import { createChatRouter, type ChatLogger, type ChatRouter, type ChatRouterDeps, type ShutdownOptions } from './router.js'

/**
 * A small standalone server for the chat path: `warden chat serve` and `warden loadtest` use
 * it; `warden serve --chat` mounts the same router next to the admin API instead. The router
 * lives under /chat in both, so clients and `loadtest --target-url` work against either.
 */
export const CHAT_MOUNT_PATH = '/chat'

export interface ChatServerOptions extends Omit<ChatRouterDeps, 'pool' | 'anthropic' | 'registry'> {
  databaseUrl: string
  llm: LlmSettings
  poolMax?: number
  /** connectionTimeoutMillis: how long a request waits for a pooled connection before pool_timeout (503) */
  poolTimeoutMs?: number
  /** application_name of the pool's connections: what pg_stat_activity and `warden pool probe` show */
  applicationName?: string
  poolName?: string
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

/** The pool warnings (held during LLM call, long hold) go to the chat logger. */
const poolLogger = (logger: ChatLogger | undefined): PoolLogger | undefined => (logger ? { warn: (details, message) => logger.warn(details, message) } : undefined)

export async function startChatServer(options: ChatServerOptions): Promise<ChatServer> {
  const registry = options.registry ?? new Registry()
  const pool = createInstrumentedPool(
    {
      connectionString: options.databaseUrl,
      max: options.poolMax ?? 10,
      connectionTimeoutMillis: options.poolTimeoutMs ?? 5000,
      application_name: options.applicationName ?? 'warden-chat',
      idleTimeoutMillis: 30_000,
    },
    { poolName: options.poolName ?? 'chat', registry, logger: poolLogger(options.logger) },
  )
  // An idle client dropped by the server (restart, network) must not crash the process.
  pool.on('error', (error) => options.logger?.warn({ err: error }, 'idle chat pool connection failed'))
  const router = createChatRouter({ ...options, pool, registry, anthropic: anthropicFactory(options.llm) })

  const app = express()
  app.disable('x-powered-by')
  app.get('/healthz', (_req, res) => void res.json({ ok: true }))
  app.get('/metrics', async (_req, res) => {
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
        const closedSessions = await router.shutdown(closeOptions)
        server.closeAllConnections()
        await stopped
        await pool.end()
        return { closedSessions }
      })()
      return closing
    },
  }
}
