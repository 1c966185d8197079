import type { Registry } from 'prom-client'
import { expect } from 'vitest'

/** Reading a prom-client Registry in tests: by family, by exact series, as a histogram, and as scrape text. */

export interface MetricValue {
  labels: Record<string, string | number>
  value: number
  metricName?: string
}

export interface MetricFamily {
  name: string
  type: string
  help: string
  values: MetricValue[]
}

export async function family(registry: Registry, name: string): Promise<MetricFamily> {
  const all = (await registry.getMetricsAsJSON()) as unknown as MetricFamily[]
  const found = all.find((metric) => metric.name === name)
  if (!found) throw new Error(`metric ${name} is not in the registry (has: ${all.map((metric) => metric.name).join(', ')})`)
  return found
}

/** The value of the series with exactly these labels, or undefined when there is none. */
export async function seriesValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const { values } = await family(registry, name)
  const wanted = Object.entries(labels)
  const match = values.find(
    (v) => Object.keys(v.labels).length === wanted.length && wanted.every(([key, value]) => v.labels[key] === value),
  )
  return match?.value
}

export interface HistogramValue {
  /** cumulative count by upper bound (+Inf included) */
  buckets: Map<number, number>
  sum: number
  count: number
}

/** The one series of a histogram whose labels (besides le) include `labels`. */
export async function histogram(registry: Registry, name: string, labels: Record<string, string>): Promise<HistogramValue> {
  const { values } = await family(registry, name)
  const mine = values.filter((v) => Object.entries(labels).every(([key, value]) => v.labels[key] === value))
  const buckets = new Map<number, number>()
  for (const v of mine.filter((v) => v.metricName === `${name}_bucket`)) {
    buckets.set(v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le), v.value)
  }
  const sum = mine.find((v) => v.metricName === `${name}_sum`)?.value ?? Number.NaN
  const count = mine.find((v) => v.metricName === `${name}_count`)?.value ?? Number.NaN
  return { buckets, sum, count }
}

const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$/

/** The labels of a sample without `le`, in a canonical order. */
function seriesKey(labelText: string): string {
  const pairs = [...labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
    .filter((m) => m[1] !== 'le')
    .map((m) => `${m[1]}=${m[2]}`)
  return `{${pairs.sort().join(',')}}`
}

/**
 * Checks the text exposition format the way a scraper reads it: every sample line parses, and
 * belongs to a family declared by HELP and TYPE before it (histograms: _bucket/_sum/_count,
 * buckets cumulative with le="+Inf" equal to _count).
 */
export function checkExposition(text: string): { families: Map<string, string>; samples: number } {
  const families = new Map<string, string>()
  const helps = new Set<string>()
  const buckets = new Map<string, number[]>()
  const counts = new Map<string, number>()
  let samples = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line)
    if (comment) {
      if (comment[1] === 'HELP') helps.add(comment[2]!)
      else {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(comment[3])
        families.set(comment[2]!, comment[3]!)
      }
      continue
    }
    const sample = SAMPLE_LINE.exec(line)
    expect(sample, `not a valid sample line: ${line}`).not.toBeNull()
    samples += 1
    const name = sample![1]!
    const base = [...families.keys()].find(
      (f) => name === f || (families.get(f) === 'histogram' && [`${f}_bucket`, `${f}_sum`, `${f}_count`].includes(name)),
    )
    expect(base, `sample ${name} has no TYPE line before it`).toBeDefined()
    expect(helps.has(base!), `family ${base} has no HELP`).toBe(true)
    if (families.get(base!) === 'counter') expect(base!.endsWith('_total')).toBe(true)
    const series = seriesKey(sample![2] ?? '')
    if (name.endsWith('_bucket')) {
      const key = `${base}${series}`
      buckets.set(key, [...(buckets.get(key) ?? []), Number(sample![3])])
      if (/le="\+Inf"/.test(sample![2] ?? '')) counts.set(key, Number(sample![3]))
    }
    if (name === `${base}_count`) expect(counts.get(`${base}${series}`), `${line}: +Inf bucket must equal _count`).toBe(Number(sample![3]))
  }
  for (const [key, values] of buckets) {
    for (let i = 1; i < values.length; i += 1)
      expect(values[i]!, `${key} buckets must be cumulative`).toBeGreaterThanOrEqual(values[i - 1]!)
  }
  return { families, samples }
}
