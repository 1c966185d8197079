import { setMaxListeners } from 'node:events'
import { run } from '../db/database.js'
import { countOpenDemoSessions } from './queries.js'
import Anthropic from '@anthropic-ai/sdk'
import type pg from 'pg'
import type { Registry } from 'prom-client'
import { createInstrumentedPool, llmCall, poolScope, type PoolLogger } from '../pool/instrumented-pool.js'

/** What `warden pool probe` and `warden doctor` show for the demo's misbehaving app. */
export const HOLD_APP_NAME = 'demo-hold-app'

export interface HoldAppOptions {
  databaseUrl: string
  /** the slow mock LLM the app calls while it holds its transaction */
  llmUrl: string
  registry: Registry
  /** how many connections sit idle in transaction at once (staggered) */
  workers?: number
  /** how long one hold lasts: the slow mock's latency, roughly */
  holdMs: number
  logger?: PoolLogger
}

export interface HoldApp {
  stats: () => { holds: number; errors: number }
  stop: () => Promise<void>
}

/**
 * The anti-pattern of PROBLEMS.md §1 as a tiny app: open a transaction, read, then await a slow
 * LLM call through llmCall() with the connection still checked out. PostgreSQL sees the backend
 * `idle in transaction` under application_name demo-hold-app for the whole call, and the
 * instrumented pool counts warden_db_connection_held_during_llm_call_total{db_client_connection_pool_name="demo-hold-app"}.
 */
export function startHoldApp(options: HoldAppOptions): HoldApp {
  const workers = options.workers ?? 2
  const pool: pg.Pool = createInstrumentedPool(
    { connectionString: options.databaseUrl, max: workers, application_name: HOLD_APP_NAME, idleTimeoutMillis: 10_000 },
    { poolName: HOLD_APP_NAME, registry: options.registry, logger: options.logger },
  )
  pool.on('error', () => undefined)
  const anthropic = new Anthropic({ baseURL: options.llmUrl, apiKey: 'mock-key', maxRetries: 0, timeout: options.holdMs * 4 })
  const stopping = new AbortController()
  // every request in flight listens to it
  setMaxListeners(0, stopping.signal)
  let holds = 0
  let errors = 0

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const onAbort = () => (clearTimeout(timer), resolve())
      const timer = setTimeout(() => (stopping.signal.removeEventListener('abort', onAbort), resolve()), ms)
      stopping.signal.addEventListener('abort', onAbort, { once: true })
    })

  async function holdOnce(): Promise<void> {
    const client = await pool.connect()
    let broken = false
    // A terminal's Ctrl-C reaches postgres too, which ends this held connection at once.
    const onError = () => (broken = true)
    client.on('error', onError)
    try {
      await client.query('BEGIN')
      const { rows } = await run<{ open: string }>(client, countOpenDemoSessions())
      // The bug: the transaction (and the connection) stays open while the model thinks.
      await llmCall(HOLD_APP_NAME, () =>
        anthropic.messages.create(
          {
            model: 'claude-mock-1',
            max_tokens: 32,
            messages: [{ role: 'user', content: `summarise ${rows[0]?.open ?? 0} open sessions` }],
          },
          { signal: stopping.signal },
        ),
      )
      await client.query('COMMIT')
      holds += 1
    } catch (error) {
      broken = !stopping.signal.aborted
      if (broken) errors += 1
      await client.query('ROLLBACK').catch(() => (broken = true))
    } finally {
      client.removeListener('error', onError)
      client.release(broken)
    }
  }

  const loops = Array.from({ length: workers }, (_, i) =>
    poolScope(async () => {
      // Staggered, so one of them has always been idle in transaction for a while.
      await sleep((i * options.holdMs) / workers)
      while (!stopping.signal.aborted) {
        await holdOnce().catch(() => (errors += 1))
        if (!stopping.signal.aborted) await sleep(200)
      }
    }),
  )

  let stopped: Promise<void> | undefined
  return {
    stats: () => ({ holds, errors }),
    stop() {
      stopped ??= (async () => {
        stopping.abort()
        await Promise.all(loops)
        await pool.end().catch(() => undefined)
      })()
      return stopped
    },
  }
}
