import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson, runCli, type CliResult } from './helpers/cli.js'
import { createTestDatabase, useTestDatabase, type TestDatabase } from './helpers/db.js'
import { exampleConfigPath, exampleSchema, seedDailyStats, dailyStatsExpected, type StatsDays } from './helpers/fixtures.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const CONFIG = exampleConfigPath('conversation_sessions')
const cliOn = (t: TestDatabase) => (args: string[]) => runCli([...args, '--config', CONFIG], { env: { WARDEN_DATABASE_URL: t.url } })

/** Five sessions whose every state is known by construction (orphanAfter is 2 h in the example config). */
const ID = {
  live: '00000000-0000-4000-8000-00000000000a', // open, support-agent, started 10 min ago, seen 1 min ago
  orphan5h: '00000000-0000-4000-8000-00000000000b', // open, billing-agent, started 5 h ago, silent 3 h
  orphan30h: '00000000-0000-4000-8000-00000000000c', // open, support-agent, started 30 h ago, silent 29 h
  closed2h: '00000000-0000-4000-8000-00000000000d', // closed, code-agent, started 2 h ago
  closed3d: '00000000-0000-4000-8000-00000000000e', // closed, support-agent, started 3 days ago
}

interface Listed {
  state: string
  count: number
  total: number
  hasMore: boolean
  sessions: Array<{ id: string; group: string; open: boolean }>
}

describe('warden sessions list (CLI subprocess)', () => {
  let t: TestDatabase
  let cli: (args: string[]) => Promise<CliResult>
  const ids = async (args: string[]) => {
    const result = await cli(['sessions', 'list', ...args, '--json'])
    expect(result.code, show(result)).toBe(0)
    return parseJson<Listed>(result).sessions.map((s) => s.id)
  }

  beforeAll(async () => {
    t = await createTestDatabase('sessions_list_cli')
    await t.exec(exampleSchema('conversation_sessions'))
    await t.exec(
      `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds) VALUES
        ($1, 'u1', 'support-agent', true,  now() - interval '10 minutes', now() - interval '1 minute', NULL, NULL, NULL),
        ($2, 'u2', 'billing-agent', true,  now() - interval '5 hours',    now() - interval '3 hours',  NULL, NULL, NULL),
        ($3, 'u3', 'support-agent', true,  now() - interval '30 hours',   now() - interval '29 hours', NULL, NULL, NULL),
        ($4, 'u4', 'code-agent',    false, now() - interval '2 hours',    now() - interval '1 hour',   now() - interval '1 hour', now() - interval '1 hour', 3600),
        ($5, 'u5', 'support-agent', false, now() - interval '3 days',     now() - interval '3 days',   now() - interval '3 days', now() - interval '3 days', 60)`,
      [ID.live, ID.orphan5h, ID.orphan30h, ID.closed2h, ID.closed3d],
    )
    cli = cliOn(t)
  })
  afterAll(async () => {
    await t?.drop()
  })

  it('--state active (the default) lists the open sessions, most silent first; orphaned only those silent past orphanAfter', async () => {
    expect(await ids([])).toEqual([ID.orphan30h, ID.orphan5h, ID.live])
    expect(await ids(['--state', 'active'])).toEqual([ID.orphan30h, ID.orphan5h, ID.live])
    expect(await ids(['--state', 'orphaned'])).toEqual([ID.orphan30h, ID.orphan5h])
  })

  it('--state recent: started within --since (default 24h), newest first, open or closed', async () => {
    expect(await ids(['--state', 'recent'])).toEqual([ID.live, ID.closed2h, ID.orphan5h])
    expect(await ids(['--state', 'recent', '--since', '1h'])).toEqual([ID.live])
    expect(await ids(['--state', 'recent', '--since', '3h'])).toEqual([ID.live, ID.closed2h])
    expect(await ids(['--state', 'recent', '--since', '4d'])).toHaveLength(5)
  })

  it('--state closed and --state all', async () => {
    expect((await ids(['--state', 'closed'])).sort()).toEqual([ID.closed2h, ID.closed3d].sort())
    expect((await ids(['--state', 'all'])).sort()).toEqual(Object.values(ID).sort())
  })

  it('--group (repeatable) keeps only those groups, in every state', async () => {
    expect((await ids(['--state', 'all', '--group', 'support-agent'])).sort()).toEqual([ID.live, ID.orphan30h, ID.closed3d].sort())
    expect((await ids(['--state', 'all', '--group', 'support-agent', '--group', 'code-agent'])).sort()).toEqual(
      [ID.live, ID.orphan30h, ID.closed2h, ID.closed3d].sort(),
    )
    expect(await ids(['--state', 'orphaned', '--group', 'billing-agent'])).toEqual([ID.orphan5h])
    expect(await ids(['--state', 'closed', '--group', 'billing-agent'])).toEqual([])
  })

  it('human output: a table with a header and one row per session, "-" silence for closed ones; an empty state says so', async () => {
    const result = await cli(['sessions', 'list', '--state', 'all'])
    expect(result.code, show(result)).toBe(0)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^ID\s+GROUP\s+OPEN\s+STARTED\s+AGE\s+SILENT FOR$/)
    const row = (id: string) => lines.find((line) => line.startsWith(id)) ?? ''
    for (const id of Object.values(ID)) expect(row(id), `a row for ${id}:\n${result.stdout}`).not.toBe('')
    // ages as formatDuration writes them: two units at most, e.g. 5h or 5h12s a few seconds later
    expect(row(ID.orphan5h)).toMatch(/\sbilling-agent\s+yes\s.*\s5h(\d+s)?\s+3h(\d+s)?$/)
    expect(row(ID.orphan30h)).toMatch(/\ssupport-agent\s+yes\s.*\s1d6h\s+1d5h$/)
    expect(row(ID.closed2h)).toMatch(/\scode-agent\s+no\s.*\s2h(\d+s)?\s+-$/)
    expect(lines).toHaveLength(1 + 5)

    const empty = await cli(['sessions', 'list', '--state', 'closed', '--group', 'billing-agent'])
    expect(empty.code, show(empty)).toBe(0)
    expect(empty.stdout.trim()).toBe('no closed sessions')
  })
})

describe('warden sessions stats (CLI subprocess)', () => {
  let t: TestDatabase
  let cli: (args: string[]) => Promise<CliResult>
  /** the calendar days of the seed, as PostgreSQL names them (the table's instants are timestamptz) */
  let day: StatsDays

  beforeAll(async () => {
    t = await createTestDatabase('sessions_stats_cli')
    day = await seedDailyStats(t)
    cli = cliOn(t)
  })
  afterAll(async () => {
    await t?.drop()
  })

  it('--json: one row per day, newest first: sessions, average duration of the closed ones, still active, orphaned', async () => {
    const result = await cli(['sessions', 'stats', '--json'])
    expect(result.code, show(result)).toBe(0)
    // (byGroup is left out of the JSON when --by-group is not given)
    expect(parseJson(result)).toMatchObject({ days: 7 })
    expect(parseJson<{ rows: unknown[] }>(result).rows).toEqual(dailyStatsExpected(day).all)
  })

  it('--by-group splits each day by group; --days 3 leaves out the closed day 5 (nothing of it is still open)', async () => {
    const result = await cli(['sessions', 'stats', '--days', '3', '--by-group', '--json'])
    expect(result.code, show(result)).toBe(0)
    expect(parseJson(result)).toEqual({ days: 3, byGroup: true, rows: dailyStatsExpected(day).byGroup3Days })
  })

  it('refuses --days 0 and --days x with a usage error (64) naming --days', async () => {
    for (const value of ['0', 'x']) {
      const result = await cli(['sessions', 'stats', '--days', value])
      expect(result.code, show(result)).toBe(64)
      expect(result.stderr).toContain('--days')
    }
  })

  it('human output: the same figures in a table, durations as 15m; an empty window says so', async () => {
    const result = await cli(['sessions', 'stats'])
    expect(result.code, show(result)).toBe(0)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^DAY\s+SESSIONS\s+AVG DURATION\s+STILL ACTIVE\s+ORPHANED$/)
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^${day.d1}\\s+3\\s+15m\\s+1\\s+1$`)),
      expect.stringMatching(new RegExp(`^${day.d2}\\s+2\\s+-\\s+2\\s+1$`)),
      expect.stringMatching(new RegExp(`^${day.d5}\\s+1\\s+1m\\s+0\\s+0$`)),
    ])
    // its own database: nothing started today and nothing older still open
    const bare = await createTestDatabase('sessions_stats_empty')
    try {
      await bare.exec(exampleSchema('conversation_sessions'))
      await bare.exec(
        `INSERT INTO conversation_sessions (session_id, user_id, is_active, session_start, session_end, ended_at, duration_seconds)
         VALUES (gen_random_uuid(), 'old', false, now() - interval '9 days', now() - interval '9 days', now() - interval '9 days', 5)`,
      )
      const empty = await cliOn(bare)(['sessions', 'stats', '--days', '1'])
      expect(empty.code, show(empty)).toBe(0)
      expect(empty.stdout.trim()).toBe('no sessions started in the last 1 day(s)')
    } finally {
      await bare.drop()
    }
  })
})

describe('warden db migrate (CLI subprocess)', () => {
  const t = useTestDatabase('db_migrate_cli')

  it('run twice: the first applies every migration, the second applies none and changes nothing', async () => {
    const run = () => runCli(['db', 'migrate', '--json', '--database-url', t.url])
    const schemaState = async () =>
      (
        await t.exec(
          `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'warden' ORDER BY 1`,
        )
      ).rows
    const first = await run()
    expect(first.code, show(first)).toBe(0)
    const applied = parseJson<{ applied: Array<{ version: number }>; currentVersion: number; schema: string }>(first)
    expect(applied.schema).toBe('warden')
    expect(applied.applied.length).toBeGreaterThan(0)
    expect(applied.currentVersion).toBe(Math.max(...applied.applied.map((step) => step.version)))
    const afterFirst = await schemaState()
    expect(afterFirst.map((r) => r.relname)).toContain('audit_log')

    const second = await run()
    expect(second.code, show(second)).toBe(0)
    expect(parseJson(second)).toEqual({ target: 'default', schema: 'warden', applied: [], currentVersion: applied.currentVersion })
    expect(await schemaState()).toEqual(afterFirst)
    const human = await runCli(['db', 'migrate', '--database-url', t.url])
    expect(human.code, show(human)).toBe(0)
    expect(human.stdout.trim()).toBe(`schema warden is up to date (version ${applied.currentVersion})`)
  })

  it('refuses an unknown --target (78, naming the targets there are) and an unreachable database (3), creating nothing', async () => {
    const bare = await createTestDatabase('db_migrate_refused')
    try {
      const unknown = await runCli(['db', 'migrate', '--target', 'nope', '--database-url', bare.url])
      expect(unknown.code, show(unknown)).toBe(78)
      expect(unknown.stderr).toContain('nope')
      expect(unknown.stderr).toContain('default')
      const unreachable = await runCli(['db', 'migrate', '--database-url', 'postgres://postgres@127.0.0.1:1/none'])
      expect(unreachable.code, show(unreachable)).toBe(3)
      expect(unreachable.stderr).toContain('127.0.0.1:1')
      const { rows } = await bare.exec(`SELECT to_regnamespace('warden') IS NULL AS absent`)
      expect(rows).toEqual([{ absent: true }])
    } finally {
      await bare.drop()
    }
  })
})
