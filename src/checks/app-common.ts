import { formatDuration } from '../core/duration.js'
import type { PromClient, PromSample } from '../prometheus/client.js'

/** The identity of one application pool as the app-* checks report it. */
export interface PoolKey {
  job: string
  instance: string
  pool: string
}

export const keyOf = (metric: Record<string, string>): PoolKey => ({
  job: metric.job ?? '',
  instance: metric.instance ?? '',
  pool: metric.pool ?? '',
})

const id = (key: PoolKey) => `${key.job}\u0000${key.instance}\u0000${key.pool}`

/** "job "chat-api" pool "db:5432/chat" (instance 10.0.0.7:9464)" */
export const describePool = (key: PoolKey): string =>
  `job ${JSON.stringify(key.job)} pool ${JSON.stringify(key.pool)}${key.instance ? ` (instance ${key.instance})` : ''}`

/** Samples by pool, finite values only: a quantile over a window without traffic is NaN, not zero. */
export function byPool(samples: PromSample[]): Map<string, { key: PoolKey; value: number }> {
  const out = new Map<string, { key: PoolKey; value: number }>()
  for (const sample of samples) {
    if (!Number.isFinite(sample.value)) continue
    const key = keyOf(sample.metric)
    out.set(id(key), { key, value: sample.value })
  }
  return out
}

export const lookup = (map: Map<string, { value: number }>, key: PoolKey): number | undefined => map.get(id(key))?.value

/** Runs the queries side by side; the evidence keeps each query with what it returned. */
export async function runQueries<K extends string>(
  prom: PromClient,
  queries: Record<K, string>,
): Promise<{ results: Record<K, PromSample[]>; evidence: { prometheus: string; queries: Record<K, string> } }> {
  const names = Object.keys(queries) as K[]
  const values = await Promise.all(names.map((name) => prom.query(queries[name])))
  const results = Object.fromEntries(names.map((name, index) => [name, values[index]])) as Record<K, PromSample[]>
  return { results, evidence: { prometheus: prom.shownUrl, queries } }
}

export const round = (value: number, digits = 3): number => Math.round(value * 10 ** digits) / 10 ** digits

/** Seconds for messages: "2.1s", "12ms". */
export const seconds = (value: number): string => (value >= 1 && value < 60 ? `${value.toFixed(1)}s` : formatDuration(value))
