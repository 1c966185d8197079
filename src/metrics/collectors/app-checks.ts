import { APP_TARGET, runAppChecks } from '../../checks/run-apps.js'
import type { CheckResult } from '../../checks/types.js'
import type { CollectorFactory } from '../collector.js'

/**
 * warden_check_status{target="prometheus", check="app-…"}: doctor's app-* checks, when
 * prometheus.url is configured, on the first target's rounds only (they look at applications
 * through Prometheus, not at a database), at most every 15 s: their window is minutes long.
 */
export const appChecksCollector: CollectorFactory = ({ metrics, config }) => ({
  name: 'app_checks',
  minIntervalSeconds: Math.max(15, config.server.collectInterval),
  timeoutSeconds: (config.prometheus?.timeout ?? 10) * 2,
  async collect(ctx) {
    if (!config.prometheus || ctx.target.name !== config.targets[0]!.name) return []
    return runAppChecks(config)
  },
  update: (results: CheckResult[]) => {
    if (results.length) metrics.recordChecks(APP_TARGET, results)
  },
})
