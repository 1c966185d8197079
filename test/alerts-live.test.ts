import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { migrate } from '../src/db/migrate.js'
import { ROOT, writeConfig } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_COLUMNS, seedConversationSessions } from './helpers/fixtures.js'
import { startPrometheus, type RunningPrometheus } from './helpers/prometheus.js'
import { startTestService, type TestService } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

/*
 * prometheus/alerts.yml evaluated by a real Prometheus on what a real `warden serve` publishes
 * for a fleet: the unit tests (alerts.test.yml) use hand-written series, this proves the rules
 * select and group Warden's own series and label names. Alerts with a `for:` show as pending.
 */

const DOWN_URL = 'postgres://warden:not-a-secret@127.0.0.1:1/gone'

interface Alert {
  labels: Record<string, string>
  state: 'pending' | 'firing'
}

describe('the alert rules on a live fleet: two targets up (one with a table over the orphan threshold), one down', () => {
  let chat: TestDatabase
  let billing: TestDatabase
  let service: TestService
  let prometheus: RunningPrometheus

  beforeAll(async () => {
    chat = await createTestDatabase('alerts_chat')
    billing = await createTestDatabase('alerts_billing')
    // chat-prod: 9 orphans in conversations (over 5), 2 in runs; billing: 4 (under 5)
    await seedConversationSessions(chat, { orphans: 9, live: 3 })
    await chat.exec(
      `CREATE TABLE agent_runs (run_id bigserial PRIMARY KEY, started_at timestamptz NOT NULL, heartbeat_at timestamptz, finished_at timestamptz);
       INSERT INTO agent_runs (started_at, heartbeat_at) SELECT now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, 2);`,
    )
    await seedConversationSessions(billing, { orphans: 4, live: 2 })
    await Promise.all([migrate(chat.db, 'warden'), migrate(billing.db, 'warden')])
    const { config } = loadConfig({
      configPath: writeConfig(
        [
          'server: { port: 0, collectInterval: 1s, collectTimeout: 2s }',
          'targets:',
          '  - name: chat-prod',
          `    databaseUrl: ${chat.url}`,
          '    sessions:',
          `      - { table: public.conversation_sessions, name: conversations, columns: ${CONVERSATION_COLUMNS}, orphanAfter: 2h }`,
          '      - { table: public.agent_runs, name: runs, columns: { id: run_id, startedAt: started_at, lastSeenAt: heartbeat_at, endedAt: [finished_at] }, orphanAfter: 15m }',
          '  - name: billing',
          `    databaseUrl: ${billing.url}`,
          `    sessions: [{ table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS} }]`,
          '  - name: archive',
          `    databaseUrl: ${DOWN_URL}`,
          `    sessions: [{ table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS} }]`,
          '',
        ].join('\n'),
      ),
      env: {},
    })
    service = await startTestService(config)
    prometheus = await startPrometheus([new URL(service.url).host], { ruleFiles: [join(ROOT, 'prometheus', 'alerts.yml')] })
  })
  afterAll(async () => {
    await prometheus?.stop()
    await service?.close()
    await chat?.drop()
    await billing?.drop()
  })

  async function alerts(): Promise<Alert[]> {
    const body = (await (await fetch(`${prometheus.url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }
    return body.data.alerts
  }
  const named = (all: Alert[], name: string) =>
    all
      .filter((alert) => alert.labels.alertname === name)
      .map(({ labels }) => ({ target: labels.target, table: labels.table }))
      .sort((a, b) => `${a.target}/${a.table}`.localeCompare(`${b.target}/${b.table}`))

  it('fires WardenTargetDown for the down target only, WardenOrphanedSessions for the one table over 5 only, and not WardenPostgresDown', async () => {
    let seen: Alert[] = []
    await waitFor(
      async () => {
        seen = await alerts()
        return named(seen, 'WardenTargetDown').length > 0 && named(seen, 'WardenOrphanedSessions').length > 0
      },
      'WardenTargetDown and WardenOrphanedSessions pending',
      30_000,
    )
    // a few more evaluations, so an alert for the wrong target would have had its chance too
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    seen = await alerts()
    expect(named(seen, 'WardenTargetDown')).toEqual([{ target: 'archive', table: undefined }])
    expect(named(seen, 'WardenOrphanedSessions')).toEqual([{ target: 'chat-prod', table: 'conversations' }])
    expect(named(seen, 'WardenPostgresDown')).toEqual([])
    // warden_pg_up ("every target up") is 0 meanwhile: the rule WardenPostgresDown used to be would have fired
    expect((await prometheus.query('warden_pg_up'))[0]?.value).toBe(0)
    expect(
      (await prometheus.query('sum by (target, table) (warden_sessions_orphaned)'))
        .map((s) => [s.metric.target, s.metric.table, s.value])
        .sort(),
    ).toEqual([
      ['billing', 'public.conversation_sessions', 4],
      ['chat-prod', 'conversations', 9],
      ['chat-prod', 'runs', 2],
    ])
  }, 60_000)
})
