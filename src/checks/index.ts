import { blockedBackends } from './blocked-backends.js'
import { connectionHeadroom } from './connection-headroom.js'
import { danglingCostRows } from './dangling-cost-rows.js'
import { duplicateOpenSessions } from './duplicate-open-sessions.js'
import { idleInTransaction } from './idle-in-transaction.js'
import { longTransactions } from './long-transactions.js'
import { orphanIndex } from './orphan-index.js'
import { orphanedSessions } from './orphaned-sessions.js'
import { timeoutSettings } from './timeout-settings.js'
import type { Check } from './types.js'

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

export const CHECK_NAMES = CHECKS.map((check) => check.name)
