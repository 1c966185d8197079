import type { WardenConfig } from '../core/config.js'
import { PromClient } from '../prometheus/client.js'
import { APP_CHECKS } from './index.js'
import type { CheckResult } from './types.js'

/** The `target` of app-* results: they look at applications through Prometheus, not at one database. */
export const APP_TARGET = 'prometheus'

/**
 * Runs the app-* checks against prometheus.url, side by side. A check whose queries fail (an
 * unreachable Prometheus, a refused query) reports `error` with the redacted URL and the query;
 * the database checks are not affected. Without a Prometheus the checks are left out, unless
 * asked for by name: then they are skipped and say what is missing.
 */
export async function runAppChecks(config: WardenConfig, options: { only?: string[] } = {}): Promise<CheckResult[]> {
  const selected = APP_CHECKS.filter((check) =>
    options.only?.length ? options.only.includes(check.name) : !config.checks.disabled.includes(check.name),
  )
  const prometheus = config.prometheus
  if (!prometheus) {
    if (!options.only?.length) return []
    return selected.map((check) => ({
      target: APP_TARGET,
      name: check.name,
      help: check.help,
      status: 'skipped',
      message: 'no Prometheus to read application metrics from: give --prometheus URL or prometheus.url in the config',
      evidence: [],
      durationMs: 0,
    }))
  }
  const prom = new PromClient({ url: prometheus.url, headers: prometheus.headers, timeoutMs: prometheus.timeout * 1000 })
  const ctx = { prom, config, windowSeconds: prometheus.window, checks: config.checks }
  return Promise.all(
    selected.map(async (check): Promise<CheckResult> => {
      const started = performance.now()
      const base = { target: APP_TARGET, name: check.name, help: check.help }
      try {
        const finding = await check.run(ctx)
        return {
          ...base,
          status: finding.status,
          message: finding.message,
          evidence: finding.evidence ?? [],
          durationMs: performance.now() - started,
        }
      } catch (error) {
        return {
          ...base,
          status: 'error',
          message: `check could not run: ${(error as Error).message}`,
          evidence: [],
          durationMs: performance.now() - started,
        }
      }
    }),
  )
}
