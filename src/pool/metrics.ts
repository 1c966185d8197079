import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { getOrCreateMetric } from '../metrics/registry.js'

/**
 * Bucket boundaries (seconds) for pool wait and hold times: small ones for fast acquires, the
 * OpenTelemetry GenAI boundaries 0.01 … 81.92 s, and a few above, because the failures this
 * module exists for (connections held across LLM calls) live at 5–120 s.
 */
export const POOL_TIME_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68,
  655.36,
])

/** Metric names are part of the product (docs: SPEC.md, Metrics). */
export const POOL_METRIC_NAMES = Object.freeze({
  connectionCount: 'db_client_connection_count',
  connectionMax: 'db_client_connection_max',
  pendingRequests: 'db_client_connection_pending_requests',
  waitTime: 'db_client_connection_wait_time_seconds',
  useTime: 'db_client_connection_use_time_seconds',
  timeouts: 'db_client_connection_timeouts_total',
  heldDuringLlmCall: 'warden_db_connection_held_during_llm_call_total',
})

/**
 * OpenTelemetry's attributes db.client.connection.pool.name and db.client.connection.state, as
 * Prometheus spells them (what @opentelemetry/instrumentation-pg behind OpenTelemetry's Prometheus
 * exporter exposes), so one dashboard reads Warden's pools and OpenTelemetry-instrumented ones.
 */
export const POOL_NAME_LABEL = 'db_client_connection_pool_name'
export const POOL_STATE_LABEL = 'db_client_connection_state'
type PoolLabel = typeof POOL_NAME_LABEL
type StateLabel = typeof POOL_STATE_LABEL

/** What a collect-time gauge needs from one instrumented pool. */
export interface PoolGaugeSource {
  readonly poolName: string
  readonly idle: number
  readonly used: number
  readonly pending: number
  /** the pool's max option */
  readonly max: number
}

/**
 * The pools feeding the collect-time gauges of one registry. Kept on the gauge object under a
 * global symbol, so two copies of this module in one process (src and dist) share it.
 */
const SOURCES = Symbol.for('warden.pool.gaugeSources')
const NAMES = Symbol.for('warden.pool.namesSeen')
type WithSources = { [SOURCES]?: Map<string, PoolGaugeSource>; [NAMES]?: Set<string> }

export interface PoolMetrics {
  connectionCount: Gauge<PoolLabel | StateLabel>
  connectionMax: Gauge<PoolLabel>
  pendingRequests: Gauge<PoolLabel>
  waitTime: Histogram<PoolLabel>
  useTime: Histogram<PoolLabel>
  timeouts: Counter<PoolLabel>
  heldDuringLlmCall: Counter<PoolLabel | 'operation'>
  /** pools currently reported by the gauges, by pool name */
  sources: Map<string, PoolGaugeSource>
  /** every pool name that has reported to this registry (a re-created pool keeps its history) */
  namesSeen: Set<string>
}

function sourcesOf(metric: Gauge<string>): Map<string, PoolGaugeSource> {
  const holder = metric as unknown as WithSources
  holder[SOURCES] ??= new Map()
  return holder[SOURCES]
}

/**
 * Gets the pool metrics of a registry, creating each one that is missing. Safe to call once per
 * pool: every pool shares the same metric objects and is told apart by its pool name label.
 */
export function poolMetrics(registry: Registry): PoolMetrics {
  const registers = [registry]
  const connectionCount = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.connectionCount,
    Gauge,
    [POOL_NAME_LABEL, POOL_STATE_LABEL],
    () =>
      new Gauge({
        name: POOL_METRIC_NAMES.connectionCount,
        help: 'Connections of the client pool by state: idle in the pool, or used (checked out, or being opened).',
        labelNames: [POOL_NAME_LABEL, POOL_STATE_LABEL] as const,
        registers,
        collect() {
          this.reset()
          for (const source of sourcesOf(this).values()) {
            this.set({ [POOL_NAME_LABEL]: source.poolName, [POOL_STATE_LABEL]: 'idle' }, source.idle)
            this.set({ [POOL_NAME_LABEL]: source.poolName, [POOL_STATE_LABEL]: 'used' }, source.used)
          }
        },
      }),
  ) as Gauge<PoolLabel | StateLabel>
  const connectionMax = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.connectionMax,
    Gauge,
    [POOL_NAME_LABEL],
    () =>
      new Gauge({
        name: POOL_METRIC_NAMES.connectionMax,
        help: 'The most connections the client pool may open (its max option).',
        labelNames: [POOL_NAME_LABEL] as const,
        registers,
        collect() {
          this.reset()
          for (const source of sourcesOf(this).values()) this.set({ [POOL_NAME_LABEL]: source.poolName }, source.max)
        },
      }),
  ) as Gauge<PoolLabel>
  const pendingRequests = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.pendingRequests,
    Gauge,
    [POOL_NAME_LABEL],
    () =>
      new Gauge({
        name: POOL_METRIC_NAMES.pendingRequests,
        help: 'connect() calls of the pool still waiting for a connection (queued, or waiting for a new one to open).',
        labelNames: [POOL_NAME_LABEL] as const,
        registers,
        collect() {
          this.reset()
          for (const source of sourcesOf(this).values()) this.set({ [POOL_NAME_LABEL]: source.poolName }, source.pending)
        },
      }),
  ) as Gauge<PoolLabel>
  const waitTime = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.waitTime,
    Histogram,
    [POOL_NAME_LABEL],
    () =>
      new Histogram({
        name: POOL_METRIC_NAMES.waitTime,
        help: 'Time from a connect() call (or pool.query) to a connection in hand, for successful acquires.',
        labelNames: [POOL_NAME_LABEL] as const,
        buckets: [...POOL_TIME_BUCKETS],
        registers,
      }),
  ) as Histogram<PoolLabel>
  const useTime = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.useTime,
    Histogram,
    [POOL_NAME_LABEL],
    () =>
      new Histogram({
        name: POOL_METRIC_NAMES.useTime,
        help: 'Time a connection was checked out of the pool, from acquire to release.',
        labelNames: [POOL_NAME_LABEL] as const,
        buckets: [...POOL_TIME_BUCKETS],
        registers,
      }),
  ) as Histogram<PoolLabel>
  const timeouts = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.timeouts,
    Counter,
    [POOL_NAME_LABEL],
    () =>
      new Counter({
        name: POOL_METRIC_NAMES.timeouts,
        help: 'connect() calls that failed because connectionTimeoutMillis passed (pool exhausted, or a new connection too slow to open).',
        labelNames: [POOL_NAME_LABEL] as const,
        registers,
      }),
  )
  const heldDuringLlmCall = getOrCreateMetric(
    registry,
    POOL_METRIC_NAMES.heldDuringLlmCall,
    Counter,
    [POOL_NAME_LABEL, 'operation'],
    () =>
      new Counter({
        name: POOL_METRIC_NAMES.heldDuringLlmCall,
        help: 'LLM calls (llmCall) that started while their operation (request, poolScope or the unscoped rest of the process) still held a connection checked out of this pool; once per call and pool.',
        labelNames: [POOL_NAME_LABEL, 'operation'] as const,
        registers,
      }),
  )
  // The gauges read the same map: register a pool once, it shows in all.
  const sources = sourcesOf(connectionCount)
  ;(pendingRequests as unknown as WithSources)[SOURCES] = sources
  ;(connectionMax as unknown as WithSources)[SOURCES] = sources
  const holder = connectionCount as unknown as WithSources
  const namesSeen = (holder[NAMES] ??= new Set())
  return { connectionCount, connectionMax, pendingRequests, waitTime, useTime, timeouts, heldDuringLlmCall, sources, namesSeen }
}

interface HistogramEntry {
  labels: Record<string, unknown>
  sum: number
  count: number
  bucketValues: Record<string, number>
}

interface HistogramInternals {
  hashMap?: Record<string, HistogramEntry | undefined>
  upperBounds?: readonly number[]
}

/**
 * observe() for one pool, about 10× cheaper than prom-client's `labels(…).observe` (≈ 35
 * instead of ≈ 300 ns: no label validation, hashing or number-to-string per call), because it
 * runs twice per acquire. It updates the same series prom-client exports, found once by its
 * labels; whenever that series is not where it was (registry reset, unknown prom-client
 * internals) it falls back to the public observe() and looks again.
 */
export function poolObserver(histogram: Histogram<PoolLabel>, poolName: string): (seconds: number) => void {
  const child = histogram.labels({ [POOL_NAME_LABEL]: poolName })
  const internals = histogram as unknown as HistogramInternals
  const bounds = internals.upperBounds
  if (!Array.isArray(bounds) || typeof internals.hashMap !== 'object' || bounds.some((bound) => typeof bound !== 'number')) {
    return (seconds) => child.observe(seconds)
  }
  const keys = bounds.map(String)
  let key = ''
  let entry: HistogramEntry | undefined
  const find = (): void => {
    entry = undefined
    const map = internals.hashMap
    if (map === undefined || map === null) return
    for (const candidate of Object.keys(map)) {
      const found = map[candidate]
      if (found === undefined || found.labels?.[POOL_NAME_LABEL] !== poolName || Object.keys(found.labels).length !== 1) continue
      if (
        typeof found.sum !== 'number' ||
        typeof found.count !== 'number' ||
        typeof found.bucketValues !== 'object' ||
        found.bucketValues === null
      )
        continue
      if (!keys.every((bucket) => typeof found.bucketValues[bucket] === 'number')) continue
      key = candidate
      entry = found
      return
    }
  }
  return (seconds) => {
    if (entry === undefined || internals.hashMap?.[key] !== entry) {
      find()
      if (entry === undefined) {
        child.observe(seconds)
        find()
        return
      }
    }
    entry.sum += seconds
    entry.count += 1
    for (let i = 0; i < bounds.length; i += 1) {
      if (seconds <= bounds[i]!) {
        entry.bucketValues[keys[i]!]! += 1
        return
      }
    }
  }
}
