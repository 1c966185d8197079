import type { Gauge } from 'prom-client'

/**
 * The series one target owns in a gauge shared by every target. A target's update replaces its
 * own series (the ones it no longer reports disappear), never another target's: a gauge-wide
 * reset() would blank every other target's values until their next round.
 */
export class TargetSeries<L extends string> {
  private readonly owned = new Map<string, Map<string, Partial<Record<L, string>>>>()

  constructor(private readonly gauge: Gauge<L>) {}

  replace(target: string, entries: Iterable<{ labels: Partial<Record<L, string>>; value: number }>): void {
    const previous = this.owned.get(target) ?? new Map<string, Partial<Record<L, string>>>()
    const next = new Map<string, Partial<Record<L, string>>>()
    for (const { labels, value } of entries) {
      const key = JSON.stringify(labels)
      next.set(key, labels)
      this.gauge.set(labels, value)
    }
    for (const [key, labels] of previous) if (!next.has(key)) this.gauge.remove(labels)
    this.owned.set(target, next)
  }
}
