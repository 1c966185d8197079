import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ExitCode } from '../src/core/errors.js'
import { migrate } from '../src/db/migrate.js'
import { parseJson, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_COLUMNS, CONVERSATION_SHAPE, exampleConfigPath, seedConversationSessions } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const CONFIG = exampleConfigPath('conversation_sessions')

/**
 * What a sweep or close must refuse, or survive, before it changes anything: each through the
 * CLI, with the table checked by SQL afterwards.
 */
describe('hazards a sweep refuses or survives (CLI subprocess)', () => {
  let t: TestDatabase
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { WARDEN_DATABASE_URL: t.url, ...env } })

  beforeEach(async () => {
    t = await createTestDatabase('hazards')
    await seedConversationSessions(t, { orphans: 9, live: 4, closed: 2 })
    await migrate(t.db, 'warden')
  })
  afterEach(async () => {
    await t.drop()
  })

  it('a poison row (started 1900, its duration overflows integer) is set aside and named; the rest is swept', async () => {
    await t.exec(
      `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
       VALUES ('00000000-0000-0000-0000-000000000bad', 'poison', 'support-agent', true, '1900-01-01', '1900-01-02')`,
    )
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--batch-size', '4', '--json', '--config', CONFIG])
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<{ closed: number; remaining: number; skipped: { count: number; rows: Array<{ id: string; error: string }> } }>(
      result,
    )
    expect(json.closed).toBe(9)
    expect(json.remaining).toBe(1)
    expect(json.skipped).toEqual({ count: 1, rows: [{ id: '00000000-0000-0000-0000-000000000bad', error: 'integer out of range' }] })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 9 })
    const poison = await t.exec(`SELECT is_active FROM conversation_sessions WHERE user_id = 'poison'`)
    expect(poison.rows).toEqual([{ is_active: true }])
    const { rows } = await t.exec(`SELECT status, rows_affected::int FROM warden.audit_log WHERE NOT dry_run`)
    expect(rows).toEqual([{ status: 'partial', rows_affected: 9 }])
  })

  it('a table another session locks is reported with its pid and application within lock_timeout, not waited on', async () => {
    const locker = new pg.Client({ connectionString: t.url, application_name: 'schema-migration' })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
      const pid = (await locker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
      const config = writeConfig(
        `sessions:\n  table: public.conversation_sessions\n  columns: ${CONVERSATION_COLUMNS}\ndatabase:\n  lockTimeout: 300ms\n`,
      )
      const result = await cli(['sessions', 'sweep', '--apply', '--config', config])
      expect(result.code, show(result)).toBe(ExitCode.locked)
      expect(result.stderr).toContain(`table public.conversation_sessions is locked by pid ${pid} (schema-migration, AccessExclusiveLock`)
      expect(result.stderr).toContain('lock_timeout 300ms')
      await locker.query('ROLLBACK')
      // It stopped while checking the mapping against the catalog, before a run began: nothing to audit.
      const { rows } = await t.exec(`SELECT count(*)::int AS n FROM warden.audit_log`)
      expect(rows[0].n).toBe(0)
      const open = await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active`)
      expect(open.rows[0].n).toBe(13)
    } finally {
      await locker.end()
    }
  })

  it('--orphan-after below one minute needs --force to apply; a dry run only reports', async () => {
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const refused = await cli(['sessions', 'sweep', '--apply', '--orphan-after', '30s', '--config', CONFIG])
    expect(refused.code, show(refused)).toBe(ExitCode.usage)
    expect(refused.stderr).toContain('sessions.orphanAfter (--orphan-after) = 30s is below the 1m floor')
    expect(refused.stderr).toContain('--force')
    await expectInvariants(t, before, { closed: 0 })
    const dry = await cli(['sessions', 'sweep', '--orphan-after', '30s', '--json', '--config', CONFIG])
    expect(parseJson(dry), show(dry)).toMatchObject({ dryRun: true, orphans: 13 })
    const forced = await cli(['sessions', 'sweep', '--apply', '--orphan-after', '30s', '--force', '--json', '--config', CONFIG])
    expect(parseJson(forced), show(forced)).toMatchObject({ dryRun: false, closed: 13 })
    await expectInvariants(t, before, { closed: 13 })
  })

  it('an endedAt list naming one column twice is refused by the mapping check (78), before any run', async () => {
    const config = writeConfig(
      `sessions:\n  table: public.conversation_sessions\n  columns: { id: session_id, active: is_active, startedAt: session_start, endedAt: [session_end, session_end] }\n`,
    )
    for (const args of [
      ['sessions', 'sweep'],
      ['sessions', 'sweep', '--apply'],
    ]) {
      const result = await cli([...args, '--config', config])
      expect(result.code, show(result)).toBe(ExitCode.config)
      expect(result.stderr).toContain('sessions.columns.endedAt[1] = "session_end": column session_end is already mapped as endedAt[0]')
    }
    const { rows } = await t.exec(`SELECT count(*)::int AS n FROM warden.audit_log`)
    expect(rows[0].n).toBe(0)
  })
})

describe('naive timestamps written in another time zone', () => {
  let t: TestDatabase
  const cli = (args: string[]) => runCli(args, { env: { WARDEN_DATABASE_URL: t.url } })
  const mapping = (extra = '') =>
    writeConfig(
      `sessions:\n  table: public.naive_sessions\n  columns: { id: id, active: active, startedAt: started, lastSeenAt: seen, endedAt: ended }\n  orphanAfter: 2h\n${extra}`,
    )
  const shape = { table: 'naive_sessions', active: 'active', endedAt: ['ended'], startedAt: 'started', lastSeenAt: 'seen' }

  beforeEach(async () => {
    t = await createTestDatabase('naive_zone')
    await t.exec(`ALTER DATABASE "${t.name}" SET timezone = 'UTC'`)
    await migrate(t.db, 'warden')
    // An app in New York writes its wall-clock time: 100 sessions active a minute ago.
    await t.exec(
      `CREATE TABLE naive_sessions (id text PRIMARY KEY, active boolean NOT NULL, started timestamp NOT NULL, seen timestamp, ended timestamp)`,
    )
    await t.exec(
      `INSERT INTO naive_sessions SELECT 's' || i, true, (now() - interval '1 hour') AT TIME ZONE 'America/New_York',
              (now() - interval '1 minute') AT TIME ZONE 'America/New_York', NULL FROM generate_series(1, 100) i`,
    )
  })
  afterEach(async () => {
    await t.drop()
  })

  it('an apply that would close every live session is refused and says why; the dry run warns; --force overrides', async () => {
    const before = await snapshotTable(t, shape)
    const refused = await cli(['sessions', 'sweep', '--apply', '--config', mapping()])
    expect(refused.code, show(refused)).toBe(ExitCode.usage)
    expect(refused.stderr).toMatch(/every one of the 100 open session\(s\) has been silent for at least 5h1m/)
    expect(refused.stderr).toContain('declare sessions.columnsTimeZone')
    await expectInvariants(t, before, { closed: 0 })
    const { rows } = await t.exec(`SELECT status FROM warden.audit_log WHERE NOT dry_run`)
    expect(rows).toEqual([{ status: 'refused' }])

    const dry = await cli(['sessions', 'sweep', '--json', '--config', mapping()])
    const json = parseJson<{ orphans: number; warnings: string[] }>(dry)
    expect(json.orphans).toBe(100)
    expect(json.warnings.join('\n')).toContain('declare sessions.columnsTimeZone')

    const forced = await cli(['sessions', 'sweep', '--apply', '--force', '--json', '--config', mapping()])
    expect(parseJson(forced), show(forced)).toMatchObject({ closed: 100 })
  })

  it('with columnsTimeZone declared, nothing is an orphan and list shows the true instants', async () => {
    const config = mapping('  columnsTimeZone: America/New_York\n')
    const before = await snapshotTable(t, { ...shape, silenceInstant: `(COALESCE(seen, started) AT TIME ZONE 'America/New_York')` })
    const swept = await cli(['sessions', 'sweep', '--apply', '--json', '--config', config])
    expect(parseJson(swept), show(swept)).toMatchObject({ orphans: 0, closed: 0 })
    await expectInvariants(t, before, { closed: 0 })
    const listed = await runCli(['sessions', 'list', '--json', '--limit', '1', '--config', config], {
      env: { WARDEN_DATABASE_URL: t.url, TZ: 'Asia/Tokyo' },
    })
    const [row] = parseJson<{ sessions: Array<{ lastSeenAt: string; silentSeconds: number }> }>(listed).sessions
    const now = (await t.exec(`SELECT EXTRACT(EPOCH FROM now())::float8 AS now`)).rows[0].now as number
    expect(Math.abs(now - 60 - Date.parse(row!.lastSeenAt) / 1000), `lastSeenAt ${row!.lastSeenAt}`).toBeLessThan(30)
    expect(row!.silentSeconds).toBeGreaterThan(50)
    expect(row!.silentSeconds).toBeLessThan(120)
  })

  it('an unknown columnsTimeZone is refused (78) with the key and the value', async () => {
    const result = await cli(['sessions', 'sweep', '--config', mapping('  columnsTimeZone: Mars/Olympus_Mons\n')])
    expect(result.code, show(result)).toBe(ExitCode.config)
    expect(result.stderr).toContain('sessions.columnsTimeZone = "Mars/Olympus_Mons": not a time zone this server knows')
  })

  it('values in the future (an app ahead of the server) are reported as a warning', async () => {
    await t.exec(`UPDATE naive_sessions SET seen = (now() + interval '9 hours')::timestamp WHERE id = 's1'`)
    const dry = await cli(['sessions', 'sweep', '--json', '--config', mapping()])
    const json = parseJson<{ warnings: string[] }>(dry)
    expect(json.warnings.join('\n'), show(dry)).toMatch(
      /the newest seen of an open session is 8h5\dm in the future|the newest seen of an open session is 9h in the future/,
    )
  })
})

describe('connection settings refused at start-up, with the password masked', () => {
  const sweep = (env: Record<string, string>, args: string[] = []) => runCli(['sessions', 'sweep', ...args], { env })

  it.each([
    [
      'a libpq key/value string',
      'host=127.0.0.1 port=5432 password=hunter2-secret dbname=chat',
      'a key/value connection string (host=… dbname=…) is not supported',
    ],
    ['port 99999', 'postgres://warden:hunter2-secret@127.0.0.1:99999/chat', 'port "99999" is not a port number'],
    ['a / in the password', 'postgres://warden:hunter2/secret@127.0.0.1:5432/chat', 'the user name or password seems to contain "/"'],
    ['an unknown sslmode', 'postgres://warden:hunter2-secret@127.0.0.1/chat?sslmode=always', 'sslmode=always is not one of'],
  ])('%s: exit 78 naming the key, never the password', async (_what, url, message) => {
    const result = await sweep({ WARDEN_DATABASE_URL: url })
    expect(result.code, show(result)).toBe(ExitCode.config)
    expect(result.stderr).toContain('database.url')
    expect(result.stderr).toContain(message)
    expect(result.stderr + result.stdout).not.toContain('hunter2')
  })

  it('sslmode=require against a server without TLS is a configuration error (78) with the fix', async () => {
    const t = await createTestDatabase('no_tls')
    try {
      const url = new URL(t.url)
      url.searchParams.set('sslmode', 'require')
      const ssl = (await t.exec('SHOW ssl')).rows[0].ssl as string
      expect(ssl, 'this test needs a server without TLS').toBe('off')
      const result = await sweep({ WARDEN_DATABASE_URL: url.toString() })
      expect(result.code, show(result)).toBe(ExitCode.config)
      expect(result.stderr).toContain('does not accept TLS connections')
      expect(result.stderr).toContain('sslmode=disable')
    } finally {
      await t.drop()
    }
  })

  it('--host and --llm-url that are not a host or a URL are refused (64) before anything starts', async () => {
    const host = await runCli(['serve', '--host', 'not a host', '--port', '0'], {
      env: { WARDEN_DATABASE_URL: 'postgres://127.0.0.1:1/x' },
    })
    expect(host.code, show(host)).toBe(ExitCode.usage)
    expect(host.stderr).toContain('server.host = "not a host" (from flag --host): expected a host name or IP address')
    const llm = await runCli(['chat', 'serve', '--port', '0', '--llm-url', 'not a url', '--api-key', 'k'], {
      env: { WARDEN_DATABASE_URL: 'postgres://127.0.0.1:1/x' },
    })
    expect(llm.code, show(llm)).toBe(ExitCode.usage)
    expect(llm.stderr).toContain('--llm-url "not a url": expected an http:// or https:// URL')
  })
})
