import { collectDefaultMetrics, Registry, type Metric } from 'prom-client'

/**
 * prom-client's default set includes gauges named `*_total`, which `promtool check metrics`
 * rejects ("non-counter metrics should not have _total suffix"): Prometheus reserves the suffix
 * for counters. The per-type gauges beside them (`nodejs_active_handles{type}` and the others)
 * carry the same information: `sum(nodejs_active_handles)` is the total.
 */
export const PROMTOOL_REJECTED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const

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

/**
 * The registry's metric of that name, or a newly registered one: the admin service, the pools
 * and the chat path may share one registry and register the same metric in any order. A
 * same-named metric of another type or label set is a programming error worth failing on at
 * start-up.
 */
export function getOrCreateMetric<M extends Metric<string>>(
  registry: Registry,
  name: string,
  kind: abstract new (...args: never[]) => M,
  labelNames: readonly string[],
  create: () => M,
): M {
  const existing = registry.getSingleMetric(name)
  if (existing === undefined) return create()
  const labels = [...((existing as unknown as { labelNames?: string[] }).labelNames ?? [])].sort().join(',')
  if (!(existing instanceof kind) || labels !== [...labelNames].sort().join(',')) {
    throw new Error(
      `metric ${name} is already registered as ${existing.constructor.name} with labels [${labels}]; expected ${kind.name} with [${labelNames.join(', ')}]`,
    )
  }
  return existing
}
