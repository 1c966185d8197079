import { appConnectionHeldLong } from './app-connection-held-long.js'
import { appHeldIdle } from './app-held-idle.js'
import { appLlmErrors } from './app-llm-errors.js'
import { appPoolSaturation } from './app-pool-saturation.js'
import { appPoolWait } from './app-pool-wait.js'
import { blockedBackends } from './blocked-backends.js'
import { connectionHeadroom } from './connection-headroom.js'
import { danglingCostRows } from './dangling-cost-rows.js'
import { duplicateOpenSessions } from './duplicate-open-sessions.js'
import { idleInTransaction } from './idle-in-transaction.js'
import { longTransactions } from './long-transactions.js'
import { orphanIndex } from './orphan-index.js'
import { orphanedSessions } from './orphaned-sessions.js'
import { timeoutSettings } from './timeout-settings.js'
import type { AppCheck, Check } from './types.js'

/** Every check doctor and the admin service run, in the order they are reported. */
export const CHECKS: ReadonlyArray<Check<never>> = [
  orphanedSessions,
  idleInTransaction,
  longTransactions,
  blockedBackends,
  connectionHeadroom,
  timeoutSettings,
  orphanIndex,
  danglingCostRows,
  duplicateOpenSessions,
] as ReadonlyArray<Check<never>>

/**
 * The checks that read the applications' own metrics from Prometheus (prometheus.url or
 * `doctor --prometheus`): run once per doctor run, after the database checks in the report.
 */
export const APP_CHECKS: ReadonlyArray<AppCheck> = [appPoolSaturation, appPoolWait, appConnectionHeldLong, appHeldIdle, appLlmErrors]

export const APP_CHECK_NAMES = APP_CHECKS.map((check) => check.name)

export const CHECK_NAMES = [...CHECKS.map((check) => check.name), ...APP_CHECK_NAMES]
