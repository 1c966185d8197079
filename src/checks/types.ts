import type { ChecksConfig, WardenConfig } from '../core/config.js'
import type { PromClient } from '../prometheus/client.js'
import type { Database } from '../db/database.js'
import type { SessionTable } from '../db/session-table.js'
import type { Sql } from '../db/sql.js'

export type Severity = 'ok' | 'warn' | 'crit'
/** skipped: not configured for this deployment; error: the check itself could not run */
export type CheckStatus = Severity | 'skipped' | 'error'

export interface CheckContext {
  db: Database
  config: WardenConfig
  /** the target this run is about */
  target: string
  /** the target's thresholds (checks: in the config, overridden per target) */
  checks: ChecksConfig
  /** for table-scoped checks: the session table, or why it could not be resolved (only the checks that need it fail) */
  sessions: SessionTable | Error
  serverVersionNum: number
}

export interface Finding {
  status: Severity
  message: string
  evidence?: object[]
}

/**
 * One health check, postgres_exporter style: its name and help, the one statement it runs and
 * the function that grades the rows, side by side in one file. `sql` returns undefined when the
 * check does not apply (e.g. an optional mapping is not configured): the check is then skipped.
 */
export interface Check<Row = Record<string, unknown>> {
  name: string
  help: string
  /** 'table': runs once per session table of the target; default: once per target (the database server's state) */
  scope?: 'table'
  sql: (ctx: CheckContext) => Sql | undefined | Promise<Sql | undefined>
  evaluate: (rows: Row[], ctx: CheckContext) => Finding
  /** why the check is skipped when sql returns undefined */
  skipReason?: string
}

export interface CheckResult {
  /** the target (database) it looked at */
  target: string
  /** for table-scoped checks: the session table */
  table?: string
  name: string
  help: string
  status: CheckStatus
  message: string
  evidence: object[]
  durationMs: number
}

export function grade(value: number, thresholds: { warn: number; crit: number }): Severity {
  if (value >= thresholds.crit) return 'crit'
  if (value >= thresholds.warn) return 'warn'
  return 'ok'
}

export function requireSessions(ctx: CheckContext): SessionTable {
  if (ctx.sessions instanceof Error) throw ctx.sessions
  return ctx.sessions
}

/** What an app-* check sees: the user's Prometheus and the configuration, no database. */
export interface AppCheckContext {
  prom: PromClient
  config: WardenConfig
  /** prometheus.window, in seconds */
  windowSeconds: number
  /** thresholds: the top-level checks (app checks look at applications, not at one target) */
  checks: ChecksConfig
}

export type AppFinding = Finding | { status: 'skipped'; message: string; evidence?: object[] }

/**
 * A check that reads the metrics applications export (pool and GenAI) from Prometheus rather
 * than the database: it runs once per doctor run, names the job / instance / pool it blames,
 * and its evidence carries the PromQL it ran with the values it got.
 */
export interface AppCheck {
  name: string
  help: string
  run: (ctx: AppCheckContext) => Promise<AppFinding>
}
