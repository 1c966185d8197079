import type { MigrationResult } from '../db/migrate.js'
import { HOLD_APP_NAME } from './hold-app.js'
import { JOBS_SEED } from './jobs.js'
import type { DemoSeedReport } from './seed.js'
import { STACK_SETTINGS, type StackSummary } from './stack.js'

export interface StackBanner {
  bin: string
  url: string
  databaseUrl: string
  /** the demo's fleet config, which the printed commands use */
  configPath: string
  adminToken: string
  durationMs: number | null
  keepDataDir: boolean
}

const heading = (title: string) => `\n== ${title} ==`

export function renderSeeded(migration: MigrationResult, seed: DemoSeedReport, table: string): string {
  return [
    migration.applied.length
      ? `migrated schema ${migration.schema} to version ${migration.currentVersion}`
      : `schema ${migration.schema} is up to date (version ${migration.currentVersion})`,
    `seeded ${table}: ${seed.sessions} sessions of the last 7 days (seed ${seed.seed}): ${seed.orphaned} orphaned, ${seed.live} live, ${seed.idle} idle, ${seed.closed} closed`,
  ].join('\n')
}

/** The ready banner: where everything is, the token, and commands to paste into another terminal. */
export function renderStackReady(b: StackBanner): string {
  const db = `--config ${b.configPath}`
  const conversations = `${db} --target chat --table conversations`
  const orphanAfter = STACK_SETTINGS.orphanAfter
  const stopping = b.durationMs === null ? 'runs until Ctrl-C' : `stops by itself after ${Math.round(b.durationMs / 1000)}s, or on Ctrl-C`
  return [
    heading('warden demo: the whole product on an embedded PostgreSQL'),
    `  service      ${b.url}   (warden serve --chat, scheduler on)`,
    `  metrics      ${b.url}/metrics`,
    `  health       ${b.url}/healthz  ${b.url}/readyz`,
    `  api          ${b.url}/api/targets  ${b.url}/api/sessions?target=chat&table=conversations  ${b.url}/api/checks  ${b.url}/api/pool?target=chat`,
    `  probe        ${b.url}/probe?target=jobs   (one target's series, Prometheus' multi-target convention)`,
    `  chat         ${b.url}/chat/sessions`,
    `  database     ${b.databaseUrl}`,
    `  config       ${b.configPath}   (two targets: chat with conversations and chat-path, jobs with runs)`,
    `  admin token  ${b.adminToken}   (generated for this run, shown once: POST /api/sweeps and /api/sessions/close need it)`,
    heading('what is running'),
    `  ${STACK_SETTINGS.users} virtual users chat through ${b.url}/chat (mock LLM, ${STACK_SETTINGS.chatLatency} a call, some replies streamed);`,
    `    some disconnect without closing their conversation_sessions row: orphans after ${orphanAfter} of silence`,
    `  ${HOLD_APP_NAME}: holds a transaction open across a ${STACK_SETTINGS.holdMs / 1000}s LLM call (the anti-pattern), so it sits idle in transaction`,
    `  jobs: a second database whose agent_runs include ${JOBS_SEED.dead} runs whose worker died (orphans)`,
    `  scheduler: orphan sweep of every table every 30s (applied, orphanAfter ${orphanAfter}); gauges refreshed at every scrape (and every ${STACK_SETTINGS.collectInterval})`,
    heading('try, in another terminal'),
    `  ${b.bin} targets ${db}`,
    `  ${b.bin} doctor ${db}`,
    `  ${b.bin} pool probe ${db} --target chat`,
    `  ${b.bin} sessions sweep ${conversations}`,
    `  ${b.bin} sessions list --state orphaned ${db} --target jobs`,
    `  ${b.bin} loadtest --target-url ${b.url}/chat --pattern release --concurrency 20 --llm-latency ${STACK_SETTINGS.chatLatency} --duration 10s`,
    `  ${b.bin} loadtest --duration 10s   # release vs hold side by side, on its own embedded PostgreSQL`,
    `  curl -s '${b.url}/api/sessions?target=chat&table=conversations&state=orphaned&limit=5'`,
    `  curl -s -XPOST ${b.url}/api/sweeps -H 'authorization: Bearer ${b.adminToken}' -H 'content-type: application/json' -d '{"apply": true, "target": "chat", "table": "conversations"}'`,
    `  curl -s ${b.url}/metrics | grep -E '^(warden_sessions_|gen_ai_client_operation_duration_seconds_count|warden_db_connection_held)'`,
    '',
    `ready: warden demo is running at ${b.url}; it ${stopping}. Ctrl-C stops everything and ${b.keepDataDir ? 'keeps' : 'removes'} the data dir.`,
  ].join('\n')
}

export function renderStackStopped(summary: StackSummary): string {
  const t = summary.traffic
  return [
    `stopped: ${t.sessions} chat sessions, ${t.turns} turns (${t.streamed} streamed), ${t.closed} closed properly, ${t.leaked} left open by a vanished client, ${t.errors} errors${t.lastError ? ` (last: ${t.lastError})` : ''}`,
    `  ${HOLD_APP_NAME}: ${summary.holdApp.holds} LLM calls made while holding a transaction; mock LLMs answered ${summary.llmCalls} calls`,
  ].join('\n')
}
