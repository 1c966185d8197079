/**
 * An instrumented pg.Pool: OpenTelemetry-named pool metrics for Prometheus, and detectors for
 * connections held during LLM calls and for long holds (PROBLEMS.md §1 and §3).
 *
 *   const pool = instrumentPool(new pg.Pool(config), { poolName: 'chat', registry })
 *   // … the app uses pool exactly as before …
 *   const reply = await llmCall('chat', () => anthropic.messages.create(…))
 */
import pg from 'pg'
import { INSTRUMENTATION, PoolInstrumentation, poolMax, type InstrumentPoolOptions, type PatchedPool } from './pool-instrumentation.js'

export { PoolInstrumentation, type InstrumentPoolOptions } from './pool-instrumentation.js'
export { POOL_METRIC_NAMES, POOL_NAME_LABEL, POOL_STATE_LABEL, POOL_TIME_BUCKETS, poolMetrics, type PoolMetrics } from './metrics.js'
export {
  ConnectionHeldDuringLlmCallError,
  heldClients,
  llmCall,
  poolScope,
  type HeldClientInfo,
  type LlmCallOptions,
} from './held-detector.js'
export { consoleLogger, type PoolLogger, type PoolWarning } from './logger.js'

/** A point-in-time view of a pool, for the admin API and probes. */
export interface PoolSnapshot {
  /** pool name (db_client_connection_pool_name) of an instrumented pool; null for a bare pg.Pool */
  poolName: string | null
  /** connections open or opening */
  total: number
  /** connections idle in the pool */
  idle: number
  /** connections checked out (or opening for a caller): total - idle */
  used: number
  /** callers waiting for a connection: in-flight connect() calls (instrumented), pg's queue length (bare) */
  waiting: number
  /** the pool's max */
  max: number
}

/**
 * Instruments a pg.Pool in place and returns it: same object, same API (query, connect /
 * release, events, totalCount / idleCount / waitingCount). Publishes the db_client_connection_*
 * metrics (OpenTelemetry names and labels, `db_client_connection_pool_name`) into
 * `options.registry`, measures wait and use time, counts timeouts, and tracks holders for
 * llmCall() and long-hold warnings. pool.end() stops its gauges (and frees its name in that registry).
 */
export function instrumentPool<P extends pg.Pool>(pool: P, options: InstrumentPoolOptions): P {
  const existing = (pool as PatchedPool)[INSTRUMENTATION]
  if (existing !== undefined) throw new Error(`instrumentPool: this pool is already instrumented as "${existing.poolName}"`)
  new PoolInstrumentation(pool, options).install()
  return pool
}

/** `instrumentPool(new pg.Pool(config), options)`. */
export function createInstrumentedPool(config: pg.PoolConfig, options: InstrumentPoolOptions): pg.Pool {
  return instrumentPool(new pg.Pool(config), options)
}

/** The instrumentation of a pool (pool name, registry, metrics, pending count), if it has one. */
export function getPoolInstrumentation(pool: pg.Pool): PoolInstrumentation | undefined {
  return (pool as PatchedPool)[INSTRUMENTATION]
}

/** A snapshot of any pg.Pool, instrumented or not, for the admin API: {total, idle, used, waiting}. */
export function describePool(pool: pg.Pool): PoolSnapshot {
  const instrumentation = getPoolInstrumentation(pool)
  const total = pool.totalCount
  const idle = pool.idleCount
  return {
    poolName: instrumentation?.poolName ?? null,
    total,
    idle,
    used: total - idle,
    waiting: instrumentation !== undefined ? instrumentation.pending : pool.waitingCount,
    max: poolMax(pool),
  }
}
