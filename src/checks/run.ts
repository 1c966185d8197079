import type { WardenConfig } from '../core/config.js'
import { formatDuration } from '../core/duration.js'
import { usageError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { serverVersion } from '../db/queries/catalog.js'
import { localStatementTimeout, readOnlyTransaction } from '../db/queries/transaction.js'
import { resolveSessionTable } from '../db/session-table.js'
import { CHECK_NAMES, CHECKS } from './index.js'
import type { CheckContext, CheckResult, CheckStatus } from './types.js'

export interface RunChecksOptions {
  /** run only these checks (names from CHECK_NAMES); overrides checks.disabled */
  only?: string[]
  /** per-check statement deadline */
  checkTimeoutMs?: number
}

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

/**
 * Runs each check in its own read-only transaction with its own deadline, so one failing or
 * slow check reports itself and the others still run. A session mapping that does not resolve
 * fails only the checks that need it.
 */
export async function runChecks(db: Database, config: WardenConfig, options: RunChecksOptions = {}): Promise<DoctorReport> {
  const started = performance.now()
  const selected = selectChecks(options.only, config.checks.disabled)
  const [version] = await db.rows<{ versionNum: number }>(serverVersion())
  const ctx: CheckContext = {
    db,
    config,
    sessions: await resolveSessionTable(db, config.sessions).catch((error: Error) => error),
    serverVersionNum: version!.versionNum,
  }
  const checks: CheckResult[] = []
  for (const check of selected) {
    const checkStarted = performance.now()
    const base = { name: check.name, help: check.help }
    try {
      const statement = await check.sql(ctx)
      if (!statement) {
        checks.push({
          ...base,
          status: 'skipped',
          message: check.skipReason ?? 'not applicable',
          evidence: [],
          durationMs: performance.now() - checkStarted,
        })
        continue
      }
      const rows = await db.transaction(async (client) => {
        await db.query(readOnlyTransaction(), client)
        await db.query(localStatementTimeout(options.checkTimeoutMs ?? 10_000), client)
        return db.rows(statement, client)
      })
      const finding = check.evaluate(rows as never[], ctx)
      checks.push({
        ...base,
        status: finding.status,
        message: finding.message,
        evidence: finding.evidence ?? [],
        durationMs: performance.now() - checkStarted,
      })
    } catch (error) {
      checks.push({
        ...base,
        status: 'error',
        message: `check could not run: ${(error as Error).message}`,
        evidence: [],
        durationMs: performance.now() - checkStarted,
      })
    }
  }
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
