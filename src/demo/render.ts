import { renderCloseReport } from '../cli/close-report.js'
import { age, renderDailyStats, table } from '../cli/render.js'
import type { DemoResult, DemoServerInfo, DemoSummary } from './run-demo.js'

/** The post-mortem's monitoring rule: alert when more than this many sessions are active past orphanAfter. */
const ALERT_ABOVE = 5

const heading = (title: string) => `\n== ${title} ==`

export function renderStarted(server: DemoServerInfo): string {
  return `embedded PostgreSQL 18 listening on 127.0.0.1:${server.port} (data dir ${server.dataDir})`
}

export function renderDemo(result: DemoResult): string {
  const { seed, migration } = result
  const lines = [
    migration.applied.length
      ? `migrated schema ${migration.schema} to version ${migration.currentVersion} (${migration.applied.map((m) => m.name).join(', ')})`
      : `schema ${migration.schema} is up to date (version ${migration.currentVersion})`,
    `seeded ${result.table}: ${seed.sessions} sessions, most of them from the last 7 days (seed ${seed.seed}: --seed ${seed.seed} gives the same sessions)`,
    `  ${seed.closed} closed properly, ${seed.live} live, ${seed.idle} idle (silent, but inside orphanAfter), ${seed.orphaned} orphaned (disconnect never closed the row)`,
    heading(`open sessions by group (orphaned: open and silent > ${age(result.summary.orphanAfterSeconds)})`),
    renderSummary(result.summary),
    heading(`sessions stats, last ${result.stats.days} days`),
    result.stats.rows.length ? renderDailyStats(result.stats.rows, false) : 'no sessions',
    heading('sessions sweep (dry run)'),
    renderCloseReport(result.dryRun.report, 'orphaned sessions'),
    heading('sessions sweep --apply'),
    renderCloseReport(result.apply.report, 'orphaned sessions'),
    heading('after the sweep'),
    `${result.after.open} open, ${result.after.orphaned} orphaned: the sweep left the ${result.after.open} sessions silent for less than ${age(result.after.orphanAfterSeconds)} alone`,
    `demo finished in ${result.durationMs} ms`,
  ]
  return lines.join('\n')
}

export function renderSummary(summary: DemoSummary): string {
  const rows = Object.entries(summary.byGroup).map(([group, g]) => ({ group, ...g }))
  if (rows.length === 0) return 'no open sessions'
  const alert =
    summary.orphaned > ALERT_ABOVE
      ? `ALERT: ${summary.orphaned} sessions active and silent > ${age(summary.orphanAfterSeconds)} (the post-mortem's rule fires above ${ALERT_ABOVE})`
      : `ok: ${summary.orphaned} orphaned (the post-mortem's rule fires above ${ALERT_ABOVE})`
  return [
    table(rows, [
      { header: 'group', value: (r) => r.group },
      { header: 'open', value: (r) => r.open, align: 'right' },
      { header: 'orphaned', value: (r) => r.orphaned, align: 'right' },
      { header: 'oldest orphan', value: (r) => age(r.oldestOrphanAgeSeconds), align: 'right' },
    ]),
    `total: ${summary.open} open, ${summary.orphaned} orphaned; oldest orphan started ${age(summary.oldestOrphanAgeSeconds)} ago`,
    alert,
  ].join('\n')
}

/** Commands to paste into another terminal while --keep-running holds the server up. */
export function renderKeepRunning(bin: string, server: DemoServerInfo, statsDays: number): string {
  const url = `--database-url ${server.url}`
  return [
    heading('what to try next'),
    `The demo database stays up until Ctrl-C. In another terminal:`,
    `  ${bin} sessions list --state active ${url}`,
    `  ${bin} sessions stats --days ${statsDays} --by-group ${url}`,
    `  ${bin} sessions sweep ${url}   # finds nothing now: the demo closed them`,
    `  ${bin} sessions close --group support-agent --dry-run ${url}`,
    `  psql '${server.url}' -c 'SELECT id, command, reason, dry_run, rows_matched, rows_affected, status FROM warden.audit_log'`,
    '',
    `database URL: ${server.url}`,
    `Ctrl-C stops PostgreSQL and ${server.keepDataDir ? 'keeps' : 'removes'} its data dir.`,
  ].join('\n')
}

export function renderNextSteps(bin: string): string {
  return [
    heading('what to try next'),
    `  ${bin} demo                        # the whole product running: service, scheduler, chat path, traffic`,
    `  ${bin} demo --quick --keep-running # keep this database up and point the other commands at it`,
    `  ${bin} demo --quick --seed <n> --sessions 20000   # the same data again, or more of it`,
    `  ${bin} sessions sweep --database-url <your database>   # your own table: map it as in examples/conversation_sessions/warden.config.yaml`,
  ].join('\n')
}

export function renderStopped(keptDataDir: string | null): string {
  return keptDataDir
    ? `embedded PostgreSQL stopped; data dir kept at ${keptDataDir}`
    : 'embedded PostgreSQL stopped; data dir removed (--keep keeps it)'
}
