/**
 * PromQL over the metrics applications already export, in every spelling they reach Prometheus
 * under: OTLP ingestion and the Collector add the unit (db_client_connection_wait_time_seconds),
 * OpenTelemetry JS's Prometheus exporter does not (db_client_connection_wait_time), and older
 * instrumentations (instrumentation-pg before the semconv 1.26 rename, asyncpg/SQLAlchemy
 * contrib) say db_client_connections_* with `state` / `pool_name` labels and milliseconds.
 * Every builder normalises the pool label to `pool` and the unit to seconds, and keeps `job` and
 * `instance`, so a check never has to know which spelling a job uses.
 */

/** PromQL string literal: the values come from configuration and label values, not from PromQL authors. */
export const quote = (value: string): string => JSON.stringify(value)

/** seconds → a PromQL duration */
export const range = (seconds: number): string => `${Math.max(1, Math.round(seconds))}s`

/** Subquery resolution: ~100 points per window, at least one a second. */
export const step = (seconds: number): string => range(Math.max(1, Math.floor(seconds / 100)))

const BY = 'job, instance, pool'

interface Variant {
  /** metric name */
  name: string
  /** label holding the pool name */
  poolLabel: string
  /** label holding used/idle, for the connection count */
  stateLabel?: string
  /** multiply by this to get seconds (histograms) */
  toSeconds?: number
}

const CURRENT = { poolLabel: 'db_client_connection_pool_name', stateLabel: 'db_client_connection_state' }
const OLDER = { poolLabel: 'pool_name', stateLabel: 'state' }

export const VARIANTS = {
  count: [
    { name: 'db_client_connection_count', ...CURRENT },
    { name: 'db_client_connections_usage', ...OLDER },
  ],
  max: [
    { name: 'db_client_connection_max', ...CURRENT },
    { name: 'db_client_connections_max', ...OLDER },
  ],
  pending: [
    { name: 'db_client_connection_pending_requests', ...CURRENT },
    { name: 'db_client_connections_pending_requests', ...OLDER },
  ],
  timeouts: [
    { name: 'db_client_connection_timeouts_total', ...CURRENT },
    { name: 'db_client_connections_timeouts_total', ...OLDER },
  ],
  waitTime: [
    { name: 'db_client_connection_wait_time_seconds', ...CURRENT },
    { name: 'db_client_connection_wait_time', ...CURRENT },
    { name: 'db_client_connections_wait_time_milliseconds', ...OLDER, toSeconds: 0.001 },
    { name: 'db_client_connections_wait_time', ...OLDER, toSeconds: 0.001 },
  ],
  useTime: [
    { name: 'db_client_connection_use_time_seconds', ...CURRENT },
    { name: 'db_client_connection_use_time', ...CURRENT },
    { name: 'db_client_connections_use_time_milliseconds', ...OLDER, toSeconds: 0.001 },
    { name: 'db_client_connections_use_time', ...OLDER, toSeconds: 0.001 },
  ],
} satisfies Record<string, Variant[]>

/**
 * Label matchers for a selector: a string matches exactly, `{ regex }` as a regular expression
 * (the dashboards pass Grafana variables: `{ regex: '$job' }`). The key `pool` stands for the
 * pool label of each spelling (db_client_connection_pool_name, or pool_name), so one matcher
 * filters every variant before label_replace() renames it.
 */
export type Matchers = Record<string, string | { regex: string }>

/**
 * A window: seconds (the checks), or a PromQL duration as written, for the dashboards'
 * `$__rate_interval`, which Grafana substitutes.
 */
export type Window = number | string

const windowOf = (w: Window): string => (typeof w === 'number' ? range(w) : w)

const selector = (name: string, matchers: Matchers, variant?: Variant): string => {
  const parts = Object.entries(matchers).map(([key, value]) => {
    const label = key === 'pool' && variant ? variant.poolLabel : key
    return typeof value === 'string' ? `${label}=${quote(value)}` : `${label}=~${quote(value.regex)}`
  })
  return parts.length ? `${name}{${parts.join(', ')}}` : name
}

const withPool = (expr: string, variant: Variant): string => `label_replace(${expr}, "pool", "$1", ${quote(variant.poolLabel)}, "(.*)")`

const any = (variants: Variant[], build: (variant: Variant) => string): string =>
  variants.map((variant) => `(${build(variant)})`).join(' or ')

/** Connections checked out now, per pool. */
export function usedNow(matchers: Matchers = {}): string {
  return any(VARIANTS.count, (v) => `sum by (${BY}) (${withPool(selector(v.name, { ...matchers, [v.stateLabel!]: 'used' }, v), v)})`)
}

/** The pool's configured maximum, per pool. */
export function maxNow(matchers: Matchers = {}): string {
  return any(VARIANTS.max, (v) => `max by (${BY}) (${withPool(selector(v.name, matchers, v), v)})`)
}

/** Requests waiting for a connection now, per pool. */
export function pendingNow(matchers: Matchers = {}): string {
  return any(VARIANTS.pending, (v) => `sum by (${BY}) (${withPool(selector(v.name, matchers, v), v)})`)
}

/** Connection timeouts per minute over the window, per pool. */
export function timeoutsPerMinute(window: Window, matchers: Matchers = {}): string {
  return any(
    VARIANTS.timeouts,
    (v) => `60 * sum by (${BY}) (${withPool(`rate(${selector(v.name, matchers, v)}[${windowOf(window)}])`, v)})`,
  )
}

/** A quantile of the wait or use time histogram over the window, in seconds, per pool. */
export function timeQuantile(kind: 'waitTime' | 'useTime', q: number, window: Window, matchers: Matchers = {}): string {
  return any(VARIANTS[kind], (v) => {
    const rate = `sum by (${BY}, le) (${withPool(`rate(${selector(`${v.name}_bucket`, matchers, v)}[${windowOf(window)}])`, v)})`
    const quantile = `histogram_quantile(${q}, ${rate})`
    return v.toSeconds ? `${quantile} * ${v.toSeconds}` : quantile
  })
}

/** Seconds of connection use per second (the histogram's _sum rate), per pool. */
export function useSecondsRate(window: Window, matchers: Matchers = {}): string {
  return any(VARIANTS.useTime, (v) => {
    const rate = `sum by (${BY}) (${withPool(`rate(${selector(`${v.name}_sum`, matchers, v)}[${windowOf(window)}])`, v)})`
    return v.toSeconds ? `${rate} * ${v.toSeconds}` : rate
  })
}

/** Connections checked out per second (the use histogram's _count rate), per pool. */
export function usesRate(window: Window, matchers: Matchers = {}): string {
  return any(
    VARIANTS.useTime,
    (v) => `sum by (${BY}) (${withPool(`rate(${selector(`${v.name}_count`, matchers, v)}[${windowOf(window)}])`, v)})`,
  )
}

/** Average of an instant expression over the window (a subquery). */
export const avgOver = (expr: string, windowSeconds: number): string =>
  `avg_over_time((${expr})[${range(windowSeconds)}:${step(windowSeconds)}])`
export const maxOver = (expr: string, windowSeconds: number): string =>
  `max_over_time((${expr})[${range(windowSeconds)}:${step(windowSeconds)}])`
export const minOver = (expr: string, windowSeconds: number): string =>
  `min_over_time((${expr})[${range(windowSeconds)}:${step(windowSeconds)}])`

/** The GenAI client operation histogram: Warden, OTLP and the Collector add the unit, OpenTelemetry JS does not. */
export const GEN_AI_DURATION = ['gen_ai_client_operation_duration_seconds', 'gen_ai_client_operation_duration'] as const

/** GenAI operations per second over the window, by `by`, optionally only failed ones (error_type set). */
export function genAiRate(window: Window, by: string, options: { errors?: boolean; matchers?: Matchers } = {}): string {
  return GEN_AI_DURATION.map((name) => {
    const matchers = { ...(options.matchers ?? {}) }
    const sel = selector(`${name}_count`, matchers)
    const filtered = options.errors ? sel.replace(/}$|$/, (end) => (end ? `, error_type!=""}` : `{error_type!=""}`)) : sel
    return `(sum by (${by}) (rate(${filtered}[${windowOf(window)}])))`
  }).join(' or ')
}

/** Seconds spent in GenAI operations per second over the window, per job. */
export function genAiSecondsRate(window: Window, matchers: Matchers = {}): string {
  return GEN_AI_DURATION.map((name) => `(sum by (job) (rate(${selector(`${name}_sum`, matchers)}[${windowOf(window)}])))`).join(' or ')
}

/** A quantile of GenAI operation durations over the window, by `by`. */
export function genAiQuantile(q: number, window: Window, by: string, matchers: Matchers = {}): string {
  return GEN_AI_DURATION.map(
    (name) => `(histogram_quantile(${q}, sum by (${by}, le) (rate(${selector(`${name}_bucket`, matchers)}[${windowOf(window)}]))))`,
  ).join(' or ')
}
