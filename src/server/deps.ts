import type { RequestHandler } from 'express'
import type { WardenConfig } from '../core/config.js'
import type { Fleet } from '../fleet/fleet.js'
import type { FleetCollection } from '../metrics/fleet-collection.js'
import type { WardenMetrics } from '../metrics/warden-metrics.js'
import type { PoolSnapshot } from '../pool/instrumented-pool.js'
import type { Logger } from './logger.js'

/** What the admin app and its routers need: the service wires it, the routes only read it. */
export interface AppDeps {
  config: WardenConfig
  /** every target's pools and catalog-checked tables */
  fleet: Fleet
  /** Warden's registry and event metrics; GET /metrics serves `metrics.registry` */
  metrics: WardenMetrics
  logger: Logger
  /** freshened before a scrape, refreshed after applied mutations so the session gauges follow at once */
  collection?: FleetCollection
  /** aborted when the service stops: readiness turns 503 and a running sweep stops after its batch */
  shutdownSignal?: AbortSignal
  /** Warden's own pools, for GET /api/pool */
  pools?: () => PoolSnapshot[]
  /** clock of the rate limits (tests) */
  now?: () => number
  /** more routers under their own paths (the reference chat path under /chat) */
  mounts?: Array<{ path: string; router: RequestHandler }>
}
