import { collectDefaultMetrics, Registry } from 'prom-client'

/**
 * prom-client's default set includes gauges named `*_total`, which `promtool check metrics`
 * rejects ("non-counter metrics should not have _total suffix"): Prometheus reserves the suffix
 * for counters. The per-type gauges beside them (`nodejs_active_handles{type}` and the others)
 * carry the same information: `sum(nodejs_active_handles)` is the total.
 */
export const PROMTOOL_REJECTED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const

export interface RegistryOptions {
  /** process_* and nodejs_* metrics (default true) */
  defaultMetrics?: boolean
}

/**
 * Warden's own registry. Never prom-client's global one: a library that also registers into the
 * global registry (or a second copy of prom-client in node_modules) must not be able to clash
 * with Warden's names or leak into its scrape.
 */
export function createRegistry(options: RegistryOptions = {}): Registry {
  const registry = new Registry()
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry })
    for (const name of PROMTOOL_REJECTED_DEFAULTS) registry.removeSingleMetric(name)
  }
  return registry
}
