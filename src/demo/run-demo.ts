import { randomInt } from 'node:crypto'
import { loadConfig, type FlagValue, type LoadedConfig, type WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import { migrate, type MigrationResult } from '../db/migrate.js'
import { resolveSessionTable, type SessionTable } from '../db/session-table.js'
import { sessionDailyStats, summarizeSessions, type DailyStatsRow } from '../sessions/inspect.js'
import { batchingOf, sweepOrphans, type SweepResult } from '../sessions/sweep.js'
import { analyzeConversationSessions, createConversationSessions, DEMO_CONFIG_FILE, insertDemoSessions } from './queries.js'
import { generateDemoSessions, type DemoDataset, type DemoSeedReport } from './seed.js'

const INSERT_CHUNK = 20_000
const DAY = 86400

export interface DemoOptions {
  sessions: number
  seed: number
}

export interface DemoGroupSummary {
  open: number
  orphaned: number
  oldestOrphanAgeSeconds: number | null
}

/** What `warden doctor` will say about the session table: open and orphaned, by group. */
export interface DemoSummary {
  orphanAfterSeconds: number
  open: number
  orphaned: number
  oldestOrphanAgeSeconds: number | null
  byGroup: Record<string, DemoGroupSummary>
}

export interface DemoResult {
  table: string
  migration: MigrationResult
  seed: DemoSeedReport
  summary: DemoSummary
  stats: { days: number; rows: DailyStatsRow[] }
  dryRun: SweepResult
  apply: SweepResult
  after: DemoSummary
  durationMs: number
}

export const randomSeed = (): number => randomInt(1, 2 ** 31 - 1)

/**
 * The example's own mapping, with nothing from the user's environment or working directory: a
 * DATABASE_URL or a warden.config.yaml meant for their database must not steer the demo.
 */
export function demoConfig(url: string, extra: FlagValue[] = []): LoadedConfig {
  return loadConfig({
    configPath: DEMO_CONFIG_FILE,
    env: {},
    flags: [
      { key: 'database.url', flag: '(embedded PostgreSQL)', value: url },
      { key: 'database.applicationName', flag: '(demo)', value: 'warden-demo' },
      ...extra,
    ],
  })
}

/** Migrate Warden's schema, create the example table and fill it: what both demos start from. */
export async function seedDemo(
  db: Database,
  config: WardenConfig,
  options: DemoOptions,
): Promise<{ migration: MigrationResult; dataset: DemoDataset }> {
  const migration = await migrate(db, config.wardenSchema)
  await db.query(createConversationSessions())
  const dataset = generateDemoSessions({ sessions: options.sessions, seed: options.seed, orphanAfterSeconds: config.sessions.orphanAfter })
  for (let i = 0; i < dataset.rows.length; i += INSERT_CHUNK) await db.query(insertDemoSessions(dataset.rows.slice(i, i + INSERT_CHUNK)))
  await db.query(analyzeConversationSessions())
  return { migration, dataset }
}

/**
 * The whole tour on a fresh database, through the same library calls the commands make:
 * migrate, create and fill the example table, summarize, daily stats, sweep dry run, sweep.
 */
export async function runDemo(db: Database, config: WardenConfig, options: DemoOptions): Promise<DemoResult> {
  const started = performance.now()
  const { migration, dataset } = await seedDemo(db, config, options)

  const table = await resolveSessionTable(db, config.sessions)
  const summary = await summarizeDemo(db, table)
  // Enough days to reach the oldest seeded session, so the 444 h orphan's day shows up too.
  const days = Math.ceil(dataset.report.oldestStartSeconds / DAY) + 1
  const stats = { days, rows: await sessionDailyStats(db, table, days, false) }
  const sweep = { batching: batchingOf(config), maxRows: config.sweep.maxRows, wardenSchema: config.wardenSchema, command: 'demo' }
  const dryRun = await sweepOrphans(db, table, { ...sweep, dryRun: true, sampleSize: 5 })
  // The dry run already showed the sample; the apply's would be the same rows again.
  const apply = await sweepOrphans(db, table, { ...sweep, dryRun: false, sampleSize: 0 })
  const after = await summarizeDemo(db, table)
  return {
    table: `${table.name.schema}.${table.name.name}`,
    migration,
    seed: dataset.report,
    summary,
    stats,
    dryRun,
    apply,
    after,
    durationMs: Math.round(performance.now() - started),
  }
}

export async function summarizeDemo(db: Database, table: SessionTable): Promise<DemoSummary> {
  const orphanAfterSeconds = table.config.orphanAfter
  const open = await summarizeSessions(db, table, { open: true })
  const orphaned = await summarizeSessions(db, table, { open: true, silentForSeconds: orphanAfterSeconds })
  const byGroup: Record<string, DemoGroupSummary> = {}
  for (const g of open) byGroup[g.group] = { open: g.count, orphaned: 0, oldestOrphanAgeSeconds: null }
  for (const g of orphaned) {
    byGroup[g.group] = {
      open: byGroup[g.group]?.open ?? g.count,
      orphaned: g.count,
      oldestOrphanAgeSeconds: Math.round(g.oldestAgeSeconds),
    }
  }
  const ages = orphaned.map((g) => g.oldestAgeSeconds)
  return {
    orphanAfterSeconds,
    open: open.reduce((sum, g) => sum + g.count, 0),
    orphaned: orphaned.reduce((sum, g) => sum + g.count, 0),
    oldestOrphanAgeSeconds: ages.length ? Math.round(Math.max(...ages)) : null,
    byGroup,
  }
}

export interface DemoServerInfo {
  url: string
  port: number
  dataDir: string
  keepRunning: boolean
  keepDataDir: boolean
}

/**
 * The stable --json object: plain data, camelCase, sweep results in the shape `sessions sweep
 * --json` prints. database.dataDir is where the data is after the run: null once removed.
 */
export function demoJson(result: DemoResult, server: Omit<DemoServerInfo, 'dataDir'> & { dataDir: string | null }) {
  return {
    database: server,
    table: result.table,
    migration: result.migration,
    seed: result.seed,
    summary: result.summary,
    stats: result.stats,
    dryRun: result.dryRun.json,
    apply: result.apply.json,
    after: result.after,
    durationMs: result.durationMs,
  }
}

export type DemoJson = ReturnType<typeof demoJson>
