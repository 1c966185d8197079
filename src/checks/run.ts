import type { TargetConfig, WardenConfig } from '../core/config.js'
import { mapLimit, TARGET_CONCURRENCY } from '../core/concurrency.js'
import { formatDuration } from '../core/duration.js'
import { sqlstateOf, usageError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { serverVersion } from '../db/queries/catalog.js'
import { localStatementTimeout, readOnlyTransaction } from '../db/queries/transaction.js'
import { resolveSessionTable, type SessionTable } from '../db/session-table.js'
import { CHECK_NAMES, CHECKS } from './index.js'
import type { Check, CheckContext, CheckResult, CheckStatus } from './types.js'

export interface RunChecksOptions {
  /** run only these checks (names from CHECK_NAMES); overrides checks.disabled */
  only?: string[]
  /** per-check statement deadline */
  checkTimeoutMs?: number
  /** what sets that deadline, named when a check runs out of it (e.g. "--check-timeout") */
  checkTimeoutSetting?: string
}

/** The deadline of each check that warden serve runs (collectors, GET /api/checks): server.collectTimeout. */
export const serveCheckDeadline = (config: WardenConfig): Pick<RunChecksOptions, 'checkTimeoutMs' | 'checkTimeoutSetting'> => ({
  checkTimeoutMs: config.server.collectTimeout * 1000,
  checkTimeoutSetting: 'server.collectTimeout',
})

export interface DoctorReport {
  status: 'ok' | 'warn' | 'crit' | 'error'
  exitCode: 0 | 1 | 2 | 3
  verdict: string
  counts: Record<CheckStatus, number>
  checks: CheckResult[]
  durationMs: number
}

export function selectChecks(only: string[] | undefined, disabled: string[]) {
  const unknown = [...(only ?? []), ...disabled].filter((name) => !CHECK_NAMES.includes(name))
  if (unknown.length)
    throw usageError(`unknown check ${unknown.map((n) => JSON.stringify(n)).join(', ')}; known checks: ${CHECK_NAMES.join(', ')}`)
  return CHECKS.filter((check) => (only?.length ? only.includes(check.name) : !disabled.includes(check.name)))
}

export interface TargetCheckInput {
  db: Database
  target: TargetConfig
  /** the target's session tables, resolved (or why not) by the caller, which caches them */
  tables?: Array<SessionTable | Error>
}

/**
 * Runs each check in its own read-only transaction with its own deadline, so one failing or
 * slow check reports itself and the others still run. Server-wide checks run once per target,
 * session checks once per table; a table whose mapping does not resolve fails only those.
 */
export async function runTargetChecks(
  config: WardenConfig,
  input: TargetCheckInput,
  options: RunChecksOptions = {},
): Promise<CheckResult[]> {
  const { db, target } = input
  const selected = selectChecks(options.only, target.checks.disabled)
  const results: CheckResult[] = []
  let versionNum: number
  try {
    versionNum = (await db.rows<{ versionNum: number }>(serverVersion()))[0]!.versionNum
  } catch (error) {
    // The target cannot be reached: every check of it could not run, and says why.
    for (const check of selected) {
      results.push({
        target: target.name,
        name: check.name,
        help: check.help,
        status: 'error',
        message: `check could not run: ${(error as Error).message}`,
        evidence: [],
        durationMs: 0,
      })
    }
    return results
  }
  const tables =
    input.tables ??
    (await Promise.all(target.sessions.map((table) => resolveSessionTable(db, table, target.name).catch((error: Error) => error))))
  for (const check of selected) {
    const contexts =
      check.scope === 'table'
        ? tables.map((table, index) => ({ table, label: target.sessions[index]?.name }))
        : [{ table: tables[0] ?? new Error('no session table'), label: undefined }]
    for (const { table, label } of contexts) {
      const ctx: CheckContext = { db, config, target: target.name, checks: target.checks, sessions: table, serverVersionNum: versionNum }
      results.push({ ...(await runCheck(check, ctx, options)), target: target.name, ...(label === undefined ? {} : { table: label }) })
    }
  }
  return results
}

async function runCheck(check: Check<never>, ctx: CheckContext, options: RunChecksOptions): Promise<Omit<CheckResult, 'target'>> {
  const started = performance.now()
  const base = { name: check.name, help: check.help }
  const { db } = ctx
  try {
    const statement = await check.sql(ctx)
    if (!statement) {
      return {
        ...base,
        status: 'skipped',
        message: check.skipReason ?? 'not applicable',
        evidence: [],
        durationMs: performance.now() - started,
      }
    }
    const rows = await db.transaction(async (client) => {
      await db.query(readOnlyTransaction(), client)
      await db.query(localStatementTimeout(options.checkTimeoutMs ?? 10_000), client)
      return db.rows(statement, client)
    })
    const finding = check.evaluate(rows as never[], ctx)
    return {
      ...base,
      status: finding.status,
      message: finding.message,
      evidence: finding.evidence ?? [],
      durationMs: performance.now() - started,
    }
  } catch (error) {
    // the deadline that cancelled it is the check's own, not database.statementTimeout
    const timedOut = sqlstateOf(error) === '57014' && options.checkTimeoutMs !== undefined
    return {
      ...base,
      status: 'error',
      message: timedOut
        ? `check could not run: no answer within its deadline of ${options.checkTimeoutMs} ms${options.checkTimeoutSetting ? ` (${options.checkTimeoutSetting})` : ''}; the database may be overloaded or a lock is in the way`
        : `check could not run: ${(error as Error).message}`,
      evidence: [],
      durationMs: performance.now() - started,
    }
  }
}

/** Every target's checks, side by side with bounded concurrency; the verdict is the worst of them. */
export async function runFleetChecks(
  config: WardenConfig,
  inputs: TargetCheckInput[],
  options: RunChecksOptions = {},
): Promise<DoctorReport> {
  const started = performance.now()
  for (const input of inputs) selectChecks(options.only, input.target.checks.disabled)
  const results = await mapLimit(inputs, TARGET_CONCURRENCY, (input) => runTargetChecks(config, input, options))
  return summarizeResults(results.flat(), performance.now() - started)
}

/** One target's checks as a report of its own (the admin API, the tests). */
export async function runChecks(
  db: Database,
  config: WardenConfig,
  options: RunChecksOptions & { target?: TargetConfig } = {},
): Promise<DoctorReport> {
  const started = performance.now()
  const checks = await runTargetChecks(config, { db, target: options.target ?? config.targets[0]! }, options)
  return summarizeResults(checks, performance.now() - started)
}

/** Critical wins (act now); then a check that could not run (3); then warnings. */
export function summarizeResults(checks: CheckResult[], durationMs: number): DoctorReport {
  const counts: Record<CheckStatus, number> = { ok: 0, warn: 0, crit: 0, skipped: 0, error: 0 }
  for (const check of checks) counts[check.status] += 1
  const status = counts.crit ? 'crit' : counts.error ? 'error' : counts.warn ? 'warn' : 'ok'
  const exitCode = ({ ok: 0, warn: 1, crit: 2, error: 3 } as const)[status]
  const parts = [
    counts.crit && `${counts.crit} critical`,
    counts.error && `${counts.error} could not run`,
    counts.warn && `${counts.warn} warning(s)`,
    `${counts.ok} ok`,
    counts.skipped && `${counts.skipped} skipped`,
  ].filter(Boolean)
  const label = { ok: 'OK', warn: 'WARNING', crit: 'CRITICAL', error: 'INCOMPLETE' }[status]
  return { status, exitCode, verdict: `${label}: ${parts.join(', ')} (${formatDuration(durationMs / 1000)})`, counts, checks, durationMs }
}
