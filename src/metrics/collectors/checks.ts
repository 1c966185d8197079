import { runChecks, type DoctorReport } from '../../checks/run.js'
import type { CollectorFactory } from '../collector.js'

/** Doctor is a dozen statements: once a minute is plenty for gauges that alert over minutes. */
const CHECKS_INTERVAL_SECONDS = 60

/**
 * warden_check_status / _success / _duration_seconds from doctor's checks (the gauges live in
 * WardenMetrics, which the API's GET /api/checks and the scheduler's doctor job also feed).
 * Once the scheduler runs doctor and reports through `metrics.recordDoctor`, leave this
 * collector out of the list (`defaultCollectors({ checks: false })`) so doctor is not run twice.
 */
export const checksCollector: CollectorFactory = ({ metrics, config }) => ({
  name: 'checks',
  minIntervalSeconds: Math.max(CHECKS_INTERVAL_SECONDS, config.server.collectInterval),
  // each check has the collection deadline of its own; a stalled table fails one check, not all
  timeoutSeconds: config.server.collectTimeout * 3,
  collect: (ctx) => runChecks(ctx.db, config, { checkTimeoutMs: config.server.collectTimeout * 1000 }),
  update: (report: DoctorReport) => metrics.recordChecks(report),
})
