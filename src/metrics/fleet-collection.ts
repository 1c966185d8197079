import { Gauge, type Registry } from 'prom-client'
import type { WardenConfig } from '../core/config.js'
import type { Collection } from './collection.js'

/**
 * Every target's collection, and what a scrape needs from all of them at once: freshen the ones
 * it asks for (each with its own deadline, side by side, so a slow or broken target never delays
 * another), the fleet-wide warden_pg_up, and the age of every collector's gauges at scrape time.
 */
export class FleetCollection {
  private readonly byTarget: Map<string, Collection>
  /** how long the last scrape-triggered refresh of each set of targets took to settle, and of how many */
  private readonly settle = new Map<string, { ms: number; targets: number }>()

  constructor(
    readonly collections: Collection[],
    registry: Registry,
    private readonly config: WardenConfig,
  ) {
    this.byTarget = new Map(collections.map((collection) => [collection.target, collection]))
    const all = () => this.collections
    new Gauge({
      name: 'warden_pg_up',
      help: 'Whether the last collection round of every target reached its PostgreSQL (1) or not (0): warden_target_up for the fleet of one, kept for single-target users.',
      registers: [registry],
      collect() {
        this.set(all().every((collection) => collection.pgUpValue === true) ? 1 : 0)
      },
    })
    new Gauge({
      name: 'warden_collector_age_seconds',
      help: 'Seconds since each collector of each target last succeeded, at scrape time (+Inf: not yet): how old its gauges are.',
      labelNames: ['target', 'collector'],
      registers: [registry],
      collect() {
        for (const collection of all()) {
          for (const { collector, seconds } of collection.ages()) this.set({ target: collection.target, collector }, seconds)
        }
      },
    })
  }

  get(target: string): Collection | undefined {
    return this.byTarget.get(target)
  }

  start(): void {
    for (const collection of this.collections) collection.start()
  }

  async stop(): Promise<void> {
    await Promise.all(this.collections.map((collection) => collection.stop()))
  }

  /** A round now for one target (after a sweep changed its table), or for all. */
  refresh(target?: string): Promise<void> {
    const chosen = target === undefined ? this.collections : [this.byTarget.get(target)].filter((c): c is Collection => c !== undefined)
    return Promise.all(chosen.map((collection) => collection.refresh())).then(() => undefined)
  }

  /**
   * Before a scrape: the targets it shows are refreshed when older than server.freshFor, and the
   * scrape waits for that at most server.scrapeWait. When the last such refresh of the same
   * targets took longer than the wait (many targets, big tables, a busy server), the scrape does
   * not wait at all: it starts the refresh and serves what is there, rather than pay the whole
   * wait every time. The refresh is still timed in the background, so waiting resumes once it
   * fits again.
   */
  freshen(targets: readonly string[] = [...this.byTarget.keys()]): Promise<void> {
    const maxAgeMs = this.config.server.freshFor * 1000
    const waitMs = this.config.server.scrapeWait * 1000
    const key = targets.join('\u0000')
    const started = performance.now()
    const refreshes = targets.map((name) => this.byTarget.get(name)?.freshen(maxAgeMs, waitMs)).filter((p) => p !== undefined)
    if (refreshes.length === 0) return Promise.resolve()
    const last = this.settle.get(key)
    const settled = Promise.all(refreshes).then(() => {
      const ms = performance.now() - started
      // a refresh of a few stale targets says little about one of them all: it may not clear a slow verdict
      const verdict = this.settle.get(key)
      if (!verdict || verdict.ms <= waitMs || ms > waitMs || refreshes.length >= verdict.targets)
        this.settle.set(key, { ms, targets: refreshes.length })
    })
    if (last && last.ms > waitMs) return Promise.resolve()
    return Promise.race([settled, new Promise<void>((resolve) => setTimeout(resolve, waitMs).unref())])
  }

  status() {
    return this.collections.map((collection) => collection.status())
  }
}
