import type pg from 'pg'
import type { Registry } from 'prom-client'
import { createInstrumentedPool, type PoolLogger } from '../pool/instrumented-pool.js'
import { anthropicFactory, type LlmSettings } from './llm.js'
import { createChatRouter, type ChatLogger, type ChatRouter, type ChatRouterDeps, type ShutdownOptions } from './router.js'

/** Where the chat routes live, in `warden chat serve` and `warden serve --chat` alike. */
export const CHAT_MOUNT_PATH = '/chat'

export interface ChatMountOptions extends Omit<ChatRouterDeps, 'pool' | 'anthropic' | 'registry'> {
  databaseUrl?: string
  llm: LlmSettings
  poolMax?: number
  /** connectionTimeoutMillis: how long a request waits for a pooled connection before pool_timeout (503) */
  poolTimeoutMs?: number
  /** application_name of the pool's connections: what pg_stat_activity and `warden pool probe` show */
  applicationName?: string
  poolName?: string
}

export interface ChatMount {
  router: ChatRouter
  pool: pg.Pool
  /** let turns in flight finish (graceMs), close the sessions this router opened, end the pool */
  close(options?: ShutdownOptions): Promise<{ closedSessions: number }>
}

/** The pool warnings (held during LLM call, long hold) go to the chat logger. */
const poolLogger = (logger: ChatLogger | undefined): PoolLogger | undefined =>
  logger ? { warn: (details, message) => logger.warn(details, message) } : undefined

/** The chat path's own instrumented pool and router, publishing into the given registry. */
export function createChatMount(options: ChatMountOptions, registry: Registry): ChatMount {
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
  let closing: Promise<{ closedSessions: number }> | undefined
  return {
    router,
    pool,
    close(closeOptions) {
      closing ??= (async () => {
        let closedSessions = 0
        try {
          closedSessions = await router.shutdown(closeOptions)
        } catch (error) {
          // The database may already be going down with us (a terminal's Ctrl-C reaches it too):
          // the sessions stay open, and the orphan sweep closes them later. Shutdown goes on.
          options.logger?.warn({ err: error }, "could not close this server's chat sessions on shutdown; the orphan sweep will")
        }
        await pool.end()
        return { closedSessions }
      })()
      return closing
    },
  }
}
