import { CHECK_NAMES } from '../../checks/index.js'
import { runTargetChecks, serveCheckDeadline } from '../../checks/run.js'
import type { CheckResult } from '../../checks/types.js'
import type { CollectorFactory } from '../collector.js'

/**
 * The checks that look at what the server is doing right now: a transaction held across an LLM
 * call lasts seconds to minutes, so they run with every collection round (and every scrape that
 * freshens), not once a minute. The rest (indexes, settings, cost rows, duplicates) change slowly.
 */
export const ACTIVITY_CHECKS = ['idle-in-transaction', 'long-transactions', 'blocked-backends', 'connection-headroom'] as const
const SLOW_CHECKS_INTERVAL_SECONDS = 60

/**
 * warden_check_status / _success / _duration_seconds from doctor's checks, per target (the
 * gauges live in WardenMetrics, which GET /api/checks feeds too). Two collectors, one per pace.
 */
export const activityChecksCollector: CollectorFactory = ({ metrics, config }) => ({
  name: 'activity_checks',
  // each check has the collection deadline of its own; a stalled statement fails one check, not all
  timeoutSeconds: config.server.collectTimeout * 2,
  async collect(ctx) {
    const only = enabled(ctx.target.checks.disabled, ACTIVITY_CHECKS)
    if (only.length === 0) return []
    return runTargetChecks(config, { db: ctx.db, target: ctx.target, tables: [] }, { only, ...serveCheckDeadline(config) })
  },
  update: (results: CheckResult[], target) => metrics.recordChecks(target, results),
})

export const checksCollector: CollectorFactory = ({ metrics, config }) => ({
  name: 'checks',
  minIntervalSeconds: Math.max(SLOW_CHECKS_INTERVAL_SECONDS, config.server.collectInterval),
  timeoutSeconds: config.server.collectTimeout * 3,
  async collect(ctx) {
    const tables = await ctx.tables()
    const slow = enabled(
      ctx.target.checks.disabled,
      CHECK_NAMES.filter((name) => !(ACTIVITY_CHECKS as readonly string[]).includes(name)),
    )
    if (slow.length === 0) return []
    return runTargetChecks(config, { db: ctx.db, target: ctx.target, tables }, { only: slow, ...serveCheckDeadline(config) })
  },
  update: (results: CheckResult[], target) => metrics.recordChecks(target, results),
})

const enabled = (disabled: string[], names: readonly string[]) => names.filter((name) => !disabled.includes(name))
