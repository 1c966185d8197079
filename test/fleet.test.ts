import { Gauge } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { ExitCode } from '../src/core/errors.js'
import type { CollectorFactory } from '../src/metrics/collector.js'
import { migrate } from '../src/db/migrate.js'
import { parseJson, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_COLUMNS, CONVERSATION_SHAPE, seedConversationSessions } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'
import { ADMIN_TOKEN, parseMetrics, startTestService, valueOf, type TestService } from './helpers/server.js'
import { sleep, waitFor } from './helpers/wait.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const DOWN_URL = 'postgres://warden:not-a-secret@127.0.0.1:1/gone'
const RUNS_COLUMNS = '{ id: run_id, startedAt: started_at, lastSeenAt: heartbeat_at, endedAt: [finished_at] }'
const RUNS_SHAPE = { table: 'public.agent_runs', endedAt: ['finished_at'], startedAt: 'started_at', lastSeenAt: 'heartbeat_at' }

/** agent_runs: an endedAt-only second table, 7 runs silent for an hour (orphans past 15m), 3 alive. */
async function seedRuns(t: TestDatabase): Promise<void> {
  await t.exec(
    `CREATE TABLE agent_runs (run_id bigserial PRIMARY KEY, started_at timestamptz NOT NULL, heartbeat_at timestamptz, finished_at timestamptz)`,
  )
  await t.exec(
    `INSERT INTO agent_runs (started_at, heartbeat_at) SELECT now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, 7)`,
  )
  await t.exec(`INSERT INTO agent_runs (started_at, heartbeat_at) SELECT now() - interval '5 minutes', now() FROM generate_series(1, 3)`)
}

describe('one Warden for several databases and session tables', () => {
  let chat: TestDatabase
  let billing: TestDatabase
  let configPath: string
  const env = () => ({ CHAT_DATABASE_URL: chat.url })
  const cli = (args: string[], path = configPath) => runCli([...args, '--config', path], { env: env() })

  beforeAll(async () => {
    chat = await createTestDatabase('fleet_chat')
    billing = await createTestDatabase('fleet_billing')
    await seedConversationSessions(chat, { orphans: 6, live: 4, closed: 2 })
    await seedRuns(chat)
    await seedConversationSessions(billing, { orphans: 9, live: 1 })
    await Promise.all([migrate(chat.db, 'warden'), migrate(billing.db, 'warden')])
    configPath = writeConfig(
      [
        'server: { collectInterval: 30s, collectTimeout: 2s }',
        'targets:',
        '  - name: chat-prod',
        '    databaseUrl: ${CHAT_DATABASE_URL}',
        '    sessions:',
        `      - { table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS}, orphanAfter: 2h }`,
        `      - { table: public.agent_runs, name: runs, columns: ${RUNS_COLUMNS}, orphanAfter: 15m }`,
        '  - name: billing',
        `    databaseUrl: ${billing.url}`,
        '    checks: { orphanedSessions: { warn: 1, crit: 5 } }',
        '    sessions:',
        `      - { table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS} }`,
        '  - name: archive',
        `    databaseUrl: ${DOWN_URL}`,
        '    sessions:',
        `      - { table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS} }`,
        '',
      ].join('\n'),
    )
  })
  afterAll(async () => {
    await chat?.drop()
    await billing?.drop()
  })

  it('warden targets lists every target and table with its state; the one that is down makes it exit 3', async () => {
    const result = await cli(['targets', '--json'])
    expect(result.code, show(result)).toBe(ExitCode.unavailable)
    const { targets } = parseJson<{
      targets: Array<{ name: string; reachable: boolean; tables: Array<{ name: string; open: number | null; orphaned: number | null }> }>
    }>(result)
    expect(targets.map((t) => [t.name, t.reachable])).toEqual([
      ['chat-prod', true],
      ['billing', true],
      ['archive', false],
    ])
    expect(targets[0]!.tables).toEqual([
      expect.objectContaining({ name: 'public.conversation_sessions', open: 10, orphaned: 6 }),
      expect.objectContaining({ name: 'runs', open: 10, orphaned: 7 }),
    ])
    expect(targets[1]!.tables).toEqual([expect.objectContaining({ open: 10, orphaned: 9 })])
    expect(result.stdout + result.stderr).not.toContain('not-a-secret')
  })

  it('a session command needs --target and --table when there are several, names the choices, and changes nothing', async () => {
    const result = await cli(['sessions', 'sweep', '--apply'])
    expect(result.code, show(result)).toBe(ExitCode.config)
    expect(result.stderr).toContain('this configuration has 4 session tables (chat-prod/public.conversation_sessions, chat-prod/runs')
    const unknown = await cli(['sessions', 'list', '--target', 'nope'])
    expect(unknown.code, show(unknown)).toBe(ExitCode.config)
    expect(unknown.stderr).toContain('--target "nope": no such target; the configuration has: chat-prod, billing, archive')
    const badTable = await cli(['sessions', 'list', '--target', 'chat-prod', '--table', 'nope'])
    expect(badTable.code, show(badTable)).toBe(ExitCode.config)
    expect(badTable.stderr).toContain('--table "nope": no such session table')
    const open = await chat.exec(`SELECT count(*)::int AS n FROM agent_runs WHERE finished_at IS NULL`)
    expect(open.rows[0].n).toBe(10)
  })

  it('--target and --table pick one table: its sweep closes its orphans only, with its own orphanAfter', async () => {
    const runs = await snapshotTable(chat, RUNS_SHAPE)
    const conversations = await snapshotTable(chat, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--target', 'chat-prod', '--table', 'runs', '--apply', '--json'])
    expect(result.code, show(result)).toBe(0)
    expect(parseJson(result)).toMatchObject({
      target: 'chat-prod',
      table: 'public.agent_runs',
      orphans: 7,
      closed: 7,
      orphanAfterSeconds: 900,
    })
    await expectInvariants(chat, runs, { activeAfter: runs.at - 900, closed: 7 })
    await expectInvariants(chat, conversations, { closed: 0 })
    const list = await cli(['sessions', 'list', '--target', 'billing', '--state', 'orphaned', '--limit', '3', '--json'])
    expect(parseJson(list), show(list)).toMatchObject({ count: 3, total: 9, hasMore: true })
  })

  it('doctor checks every target with its own thresholds and exits with the worst verdict', async () => {
    const result = await cli(['doctor', '--json'])
    const report = parseJson<{ exitCode: number; checks: Array<{ target: string; table?: string; name: string; status: string }> }>(result)
    // billing has 9 orphans against its crit of 5: critical wins over the unreachable archive
    expect(result.code, show(result)).toBe(2)
    expect(report.checks.find((c) => c.target === 'billing' && c.name === 'orphaned-sessions')?.status).toBe('crit')
    // chat-prod keeps the default thresholds (warn 1, crit 6): its 6 conversation orphans are critical too, its runs are swept
    expect(report.checks.filter((c) => c.target === 'chat-prod' && c.name === 'orphaned-sessions').map((c) => [c.table, c.status])).toEqual(
      [
        ['public.conversation_sessions', 'crit'],
        ['runs', 'ok'],
      ],
    )
    expect(report.checks.filter((c) => c.target === 'archive').every((c) => c.status === 'error')).toBe(true)
  })

  describe('warden serve over the fleet', () => {
    let api: TestService
    beforeAll(async () => {
      const { config } = loadConfig({ configPath, env: env() })
      const serving = { ...config, server: { ...config.server, port: 0, adminToken: ADMIN_TOKEN } }
      api = await startTestService(serving)
    })
    afterAll(async () => {
      await api?.close()
    })

    it('labels every session gauge by target and table with the values SQL gives; the target that is down reads 0 up', async () => {
      const samples = await waitFor(async () => {
        const scraped = (await api.scrape()).samples
        return valueOf(scraped, 'warden_target_up', { target: 'archive' }) === 0 &&
          valueOf(scraped, 'warden_target_up', { target: 'billing' }) === 1
          ? scraped
          : undefined
      }, 'a first round of every target')
      const sum = (name: string, labels: Record<string, string>) =>
        samples
          .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
          .reduce((a, s) => a + s.value, 0)
      const sql = async (t: TestDatabase, where: string) =>
        (await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE ${where}`)).rows[0].n
      expect(sum('warden_sessions_active', { target: 'billing', table: 'public.conversation_sessions' })).toBe(
        await sql(billing, 'is_active'),
      )
      expect(sum('warden_sessions_orphaned', { target: 'chat-prod', table: 'public.conversation_sessions' })).toBe(
        await sql(chat, `is_active AND COALESCE(last_activity_at, session_start) < now() - interval '2 hours'`),
      )
      const runsOpen = (await chat.exec(`SELECT count(*)::int AS n FROM agent_runs WHERE finished_at IS NULL`)).rows[0].n
      expect(sum('warden_sessions_active', { target: 'chat-prod', table: 'runs' })).toBe(runsOpen)
      expect(valueOf(samples, 'warden_pg_up')).toBe(0) // not every target is up
    })

    it('GET /probe?target= serves that target only; GET /api/targets shows each with its tables', async () => {
      const probe = await api.get('/probe?target=billing')
      expect(probe.status).toBe(200)
      const text = await probe.text()
      expect(text).toContain('warden_sessions_active{target="billing"')
      expect(text).not.toContain('target="chat-prod"')
      expect(text).not.toContain('process_cpu')
      expect((await api.get('/probe?target=nope')).status).toBe(400)
      const { targets } = await (await api.get('/api/targets')).json()
      expect(targets.map((t: { name: string; up: boolean | null }) => [t.name, t.up])).toEqual([
        ['chat-prod', true],
        ['billing', true],
        ['archive', false],
      ])
    })

    it('a change is on the next scrape once server.freshFor has passed, even with a target down', async () => {
      await billing.exec(
        `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
         SELECT gen_random_uuid(), 'new', 'support-agent', true, now(), now() FROM generate_series(1, 5)`,
      )
      const expected = (await billing.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active`)).rows[0].n
      // the collection interval is 30 s: only the scrape's own refresh can bring the new rows in
      const seen = await waitFor(
        async () => {
          const scraped = (await api.scrape()).samples
          const active = scraped
            .filter((s) => s.name === 'warden_sessions_active' && s.labels.target === 'billing')
            .reduce((a, s) => a + s.value, 0)
          return active === expected ? scraped : undefined
        },
        `warden_sessions_active of billing to reach ${expected}`,
        10_000,
        300,
      )
      expect(valueOf(seen, 'warden_collector_age_seconds', { target: 'billing', collector: 'sessions' })).toBeLessThan(5)
    })

    it('POST /api/sweeps with target and table sweeps that table, and refuses a request that names none when there are several', async () => {
      const refused = await api.post('/api/sweeps', { apply: true })
      expect(refused.status).toBe(400)
      expect((await refused.json()).error.message).toContain('pick one with target and table')
      const before = await snapshotTable(billing, CONVERSATION_SHAPE)
      const swept = await api.post('/api/sweeps', { apply: true, target: 'billing', table: 'public.conversation_sessions' })
      expect(swept.status).toBe(200)
      expect(await swept.json()).toMatchObject({ target: 'billing', closed: 9 })
      await expectInvariants(billing, before, { activeAfter: before.at - 7200, closed: 9 })
      const { samples } = await api.scrape()
      expect(
        valueOf(samples, 'warden_sessions_closed_total', {
          target: 'billing',
          table: 'public.conversation_sessions',
          reason: 'orphan_sweep',
        }),
      ).toBe(9)
    })
  })
})

describe('fleet configuration refused with the key named (78), nothing changed', () => {
  const columns = CONVERSATION_COLUMNS
  it.each([
    [
      'a duplicate target name',
      `targets:\n  - { name: a, databaseUrl: ${DOWN_URL}, sessions: [{ table: s, columns: ${columns} }] }\n  - { name: a, databaseUrl: ${DOWN_URL}, sessions: [{ table: s, columns: ${columns} }] }\n`,
      'targets[1].name = "a"',
      'expected a unique name; targets[0] is also "a"',
    ],
    [
      'a target without a URL',
      `targets:\n  - { name: a, sessions: [{ table: s, columns: ${columns} }] }\n`,
      'targets[0].databaseUrl missing',
      'expected a postgres:// URL for this target',
    ],
    [
      'an env reference that is unset',
      `targets:\n  - { name: a, databaseUrl: "\${NOT_SET_ANYWHERE}", sessions: [{ table: s, columns: ${columns} }] }\n`,
      'targets[0].databaseUrl = "${NOT_SET_ANYWHERE}"',
      'environment variable NOT_SET_ANYWHERE is not set',
    ],
    [
      'a table listed twice',
      `targets:\n  - { name: a, databaseUrl: ${DOWN_URL}, sessions: [{ table: s, columns: ${columns} }, { table: public.s, name: s2, columns: ${columns} }] }\n`,
      'targets[0].sessions[1].table',
      'public.s is listed twice in target "a"',
    ],
    [
      'sessions beside targets',
      `sessions: { table: s, columns: ${columns} }\ntargets:\n  - { name: a, databaseUrl: ${DOWN_URL}, sessions: [{ table: s, columns: ${columns} }] }\n`,
      'and targets are two ways to name the session tables',
      '',
    ],
  ])('%s', async (_what, yaml, key, message) => {
    const result = await runCli(['sessions', 'sweep', '--apply', '--config', writeConfig(yaml)])
    expect(result.code, show(result)).toBe(ExitCode.config)
    expect(result.stderr).toContain(key)
    expect(result.stderr).toContain(message)
    expect(result.stderr).not.toContain('not-a-secret')
  })
})

describe('a fleet whose refresh does not fit in server.scrapeWait', () => {
  let t: TestDatabase
  let api: TestService | undefined
  const TARGETS = 8 // two waves through the 4 collection slots
  const RUN_MS = 400
  const runs = new Map<string, number>()
  // a collector that answers in 400 ms and counts its runs per target: a refresh of all eight
  // takes about 800 ms, over the 600 ms the scrape may wait
  const slow: CollectorFactory = ({ registry }) => {
    const gauge = new Gauge({
      name: 'warden_test_slow_runs',
      help: 'runs of the slow test collector',
      labelNames: ['target'],
      registers: [registry],
    })
    return {
      name: 'slow',
      needsDatabase: false,
      collect: async (ctx) => {
        await sleep(RUN_MS)
        const n = (runs.get(ctx.target.name) ?? 0) + 1
        runs.set(ctx.target.name, n)
        return n
      },
      update: (n: number, target: string) => gauge.set({ target }, n),
    }
  }

  beforeAll(async () => {
    t = await createTestDatabase('fleet_slow')
    await seedConversationSessions(t, { orphans: 1, live: 1 })
    const yaml = [
      'server: { port: 0, collectInterval: 60s, freshFor: 200ms, scrapeWait: 600ms }',
      'targets:',
      ...Array.from(
        { length: TARGETS },
        (_, i) =>
          `  - { name: t${i}, databaseUrl: '${t.url}', sessions: [{ table: public.conversation_sessions, columns: ${CONVERSATION_COLUMNS} }] }`,
      ),
      '',
    ].join('\n')
    api = await startTestService(loadConfig({ configPath: writeConfig(yaml), env: {} }).config, { collectors: [slow] })
  })
  afterAll(async () => {
    await api?.close()
    await t?.drop()
  })

  it('stops paying the wait once a refresh has not fitted, still refreshes in the background, and waits again for one target on /probe', async () => {
    const timed = async (path: string) => {
      const started = performance.now()
      const response = await api!.get(path)
      const text = await response.text()
      return { ms: performance.now() - started, samples: parseMetrics(text).samples, status: response.status }
    }
    await waitFor(() => runs.size === TARGETS, 'a first round of every target', 10_000)
    await sleep(300)
    // this scrape finds all eight stale, waits its 600 ms, and learns that the refresh took longer
    const first = await timed('/metrics')
    expect(first.ms).toBeGreaterThanOrEqual(550)
    await waitFor(() => [...runs.values()].every((n) => n >= 2), 'the refresh that scrape started to finish', 10_000)
    const before = Object.fromEntries(runs)
    for (let i = 0; i < 3; i += 1) {
      await sleep(300) // past freshFor: each scrape starts a refresh again, and does not wait for it
      const next = await timed('/metrics')
      expect(next.status).toBe(200)
      expect(next.ms).toBeLessThan(300)
    }
    // the refreshes those scrapes started ran anyway: the gauges moved on
    await waitFor(() => Object.entries(before).every(([target, n]) => (runs.get(target) ?? 0) > n), 'the background refreshes', 10_000)
    // one target alone fits in the wait: /probe waits for it and shows the run it waited for
    await sleep(300)
    const runsBefore = runs.get('t3')!
    const probe = await timed('/probe?target=t3')
    expect(probe.ms).toBeGreaterThanOrEqual(RUN_MS - 50)
    expect(valueOf(probe.samples, 'warden_test_slow_runs', { target: 't3' })).toBe(runsBefore + 1)
  })
})
