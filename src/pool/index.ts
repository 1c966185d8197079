/**
 * `warden/pool`: the part of Warden that applications import (docs/instrumenting.md). Only what
 * is exported here is public and semver-covered; the rest of dist/ is Warden's own and not
 * reachable through the package's `exports`.
 *
 *   import { createInstrumentedPool, llmCall, poolScope } from 'warden/pool'
 */
export { createInstrumentedPool, describePool, instrumentPool, type PoolSnapshot } from './instrumented-pool.js'
export {
  ConnectionHeldDuringLlmCallError,
  heldClients,
  llmCall,
  poolScope,
  type HeldClientInfo,
  type LlmCallOptions,
} from './held-detector.js'
export type { InstrumentPoolOptions } from './pool-instrumentation.js'
export { consoleLogger, type PoolLogger, type PoolWarning } from './logger.js'
export { POOL_METRIC_NAMES, POOL_NAME_LABEL, POOL_STATE_LABEL, POOL_TIME_BUCKETS } from './metrics.js'
