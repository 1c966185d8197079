import type { Registry } from 'prom-client'

/** Nearest-rank percentile of an ascending array; null when there is nothing to rank. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]!
}

interface SeriesValue {
  labels: Record<string, string | number>
  value: number
  metricName?: string
}

async function seriesOf(registry: Registry, name: string): Promise<SeriesValue[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name)
  return (metric?.values ?? []) as SeriesValue[]
}

/** Sum of a counter's series whose labels include `labels`. */
export async function counterValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  return (await seriesOf(registry, name))
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0)
}

/**
 * A quantile of one histogram series, interpolated inside its bucket as PromQL's
 * histogram_quantile() does, so the figure matches what a dashboard would show. Null without
 * observations.
 */
export async function histogramQuantile(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
  q: number,
): Promise<number | null> {
  const buckets = (await seriesOf(registry, name))
    .filter((v) => v.metricName === `${name}_bucket` && Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .map((v) => ({ le: v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le), count: v.value }))
    .sort((a, b) => a.le - b.le)
  const total = buckets.at(-1)?.count ?? 0
  if (total === 0) return null
  const rank = q * total
  let lower = 0
  let below = 0
  for (const bucket of buckets) {
    if (bucket.count >= rank) {
      // The +Inf bucket has no upper bound: answer with the highest finite one, as Prometheus does.
      if (!Number.isFinite(bucket.le)) return lower
      const inBucket = bucket.count - below
      return inBucket === 0 ? bucket.le : lower + (bucket.le - lower) * ((rank - below) / inBucket)
    }
    lower = bucket.le
    below = bucket.count
  }
  return lower
}
