import { createServer, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import pg from 'pg'
import type { Registry } from 'prom-client'
import {
  instrumentPool,
  POOL_METRIC_NAMES,
  POOL_NAME_LABEL,
  type InstrumentPoolOptions,
  type PoolLogger,
  type PoolWarning,
} from '../../src/pool/instrumented-pool.js'
import type { TestDatabase } from './db.js'
import { seriesValue } from './registry.js'

/** Fixtures for tests of the instrumented pool (src/pool) on a real PostgreSQL. */

export interface LoggedWarning {
  details: PoolWarning
  message: string
}

export function collectingLogger(): { logger: PoolLogger; warnings: LoggedWarning[] } {
  const warnings: LoggedWarning[] = []
  return { warnings, logger: { warn: (details, message) => warnings.push({ details, message }) } }
}

export interface PoolFixture {
  /** an instrumented pool (name "app", max 4, warnings collected and dropped unless a logger is given) */
  makePool: (options: Partial<InstrumentPoolOptions> & { registry: Registry }, config?: pg.PoolConfig) => pg.Pool
  /** ends every pool made so far (afterEach) */
  endAll: () => Promise<void>
}

export function poolFixture(database: () => TestDatabase): PoolFixture {
  const pools: pg.Pool[] = []
  return {
    makePool: (options, config = {}) => {
      const pool = instrumentPool(new pg.Pool({ connectionString: database().url, max: 4, ...config }), {
        poolName: 'app',
        logger: collectingLogger().logger,
        ...options,
      })
      // A pattern that leaks a checked-out client on purpose leaves it connected until the file's
      // database is dropped WITH (FORCE); its 57P01 then has no listener (pg-pool listens only on
      // idle clients) and would surface as an uncaught exception in a later file's run.
      pool.on('connect', (client) => client.on('error', () => undefined))
      // The same for an idle client of a pool a test already began to end (endAll does not wait for
      // it): pg-pool re-emits that client's 57P01 on the pool, uncaught without a listener there.
      pool.on('error', () => undefined)
      pools.push(pool)
      return pool
    },
    endAll: async () => {
      await Promise.all(pools.splice(0).map((pool) => (pool.ended || pool.ending ? Promise.resolve() : pool.end())))
    },
  }
}

/** warden_db_connection_held_during_llm_call_total of one pool and operation (0 before its first increment). */
export async function heldCount(registry: Registry, operation = 'chat', poolName = 'app'): Promise<number> {
  return (await seriesValue(registry, POOL_METRIC_NAMES.heldDuringLlmCall, { [POOL_NAME_LABEL]: poolName, operation })) ?? 0
}

/** The PostgreSQL backend pid pg read from the server's BackendKeyData at connect. */
export function backendPid(client: pg.PoolClient): number {
  const pid = (client as unknown as { processID?: number | null }).processID
  if (typeof pid !== 'number') throw new Error('the client has no backend pid (not connected?)')
  return pid
}

/** A one-shot signal between concurrent pieces of a test: `open()` resolves `opened`. */
export function signal(): { open: () => void; opened: Promise<void> } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { open, opened }
}

/** Blocks the event loop on purpose (timers cannot run meanwhile). */
export function busyWait(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spinning
  }
}

/** Serves `handler` (an Express app, or any request listener) on 127.0.0.1 at a random port. */
export async function serveOnRandomPort(handler: RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
