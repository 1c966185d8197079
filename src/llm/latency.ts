/**
 * Latency distributions for the mock LLM.
 *
 * Real LLM latency is right-skewed: most calls cluster near the median and a long tail
 * reaches many times that. A lognormal pinned by (median, p99) reproduces that tail, which is
 * what exhausts connection pools, so load tests need it rather than a fixed delay.
 */

/** A uniform source in [0, 1). */
export type Rng = () => number

export type LatencySpec = number | { median: number; p99: number }

/** z such that P(Z <= z) = 0.99 for a standard normal Z. */
const Z_99 = 2.326

/**
 * mulberry32: tiny and fast, and good enough for drawing faults and delays. Seeded so a
 * failing load test or flaky-looking fault pattern can be replayed exactly.
 */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function makeRng(seed?: number): Rng {
  return seed === undefined ? Math.random : mulberry32(seed)
}

/** Box–Muller; one normal per call keeps the draw sequence simple to reason about when seeded. */
export function standardNormal(rng: Rng): number {
  // 1 - u keeps the argument of log in (0, 1], so log never sees 0.
  const u1 = 1 - rng()
  const u2 = rng()
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
}

export interface LognormalParams {
  mu: number
  sigma: number
}

export function lognormalParams(median: number, p99: number): LognormalParams {
  if (!(median > 0)) throw new RangeError(`latency median must be > 0, got ${median}`)
  if (!(p99 >= median)) throw new RangeError(`latency p99 (${p99}) must be >= median (${median})`)
  return { mu: Math.log(median), sigma: (Math.log(p99) - Math.log(median)) / Z_99 }
}

/**
 * Returns a function drawing a delay in ms. Invalid specs throw here, at start-up, rather
 * than on the first request where the error would surface as a confusing 500.
 */
export function latencySampler(spec: LatencySpec | undefined, rng: Rng): () => number {
  if (spec === undefined) return () => 0
  if (typeof spec === 'number') {
    if (!(spec >= 0) || !Number.isFinite(spec)) throw new RangeError(`latency must be a finite number >= 0, got ${spec}`)
    return () => spec
  }
  const { mu, sigma } = lognormalParams(spec.median, spec.p99)
  if (sigma === 0) return () => spec.median
  return () => Math.exp(mu + sigma * standardNormal(rng))
}
