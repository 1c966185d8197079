import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ExitCode } from '../src/core/errors.js'
import { migrate } from '../src/db/migrate.js'
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { parseJson, ROOT, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { adminUrl, createTestDatabase, existingTestDatabase, type TestDatabase } from './helpers/db.js'

const CONVERSATION_SCHEMA = readFileSync(join(ROOT, 'examples', 'conversation_sessions', 'schema.sql'), 'utf8')

/** conversation_sessions with orphans (silent 3 h), live sessions, closed ones, a text status column, and a table y. */
async function seed(t: TestDatabase): Promise<void> {
  await t.exec(CONVERSATION_SCHEMA)
  await t.exec(`ALTER TABLE conversation_sessions ADD COLUMN status text NOT NULL DEFAULT 'open'`)
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
     SELECT gen_random_uuid(), 'user-' || i, (ARRAY['support-agent', 'billing-agent'])[1 + i % 2], true,
            now() - interval '5 hours' - i * interval '1 minute', now() - interval '3 hours' - i * interval '1 minute'
       FROM generate_series(1, 8) AS i`,
  )
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
     SELECT gen_random_uuid(), 'live-' || i, 'support-agent', true, now() - interval '1 hour', now() - interval '1 minute'
       FROM generate_series(1, 3) AS i`,
  )
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds, status)
     SELECT gen_random_uuid(), 'done-' || i, 'code-agent', false, now() - interval '2 days', now() - interval '47 hours',
            now() - interval '47 hours', now() - interval '47 hours', 3600, 'closed'
       FROM generate_series(1, 2) AS i`,
  )
  // The table that `x; drop table y` would drop if an identifier ever reached SQL unquoted.
  await t.exec('CREATE TABLE public.y (x int); INSERT INTO public.y VALUES (1)')
}

interface Snapshot {
  rows: number
  md5: string
  /** null while Warden's schema is not migrated */
  audit: { total: number; applied: number } | null
  yExists: boolean
}

async function snapshot(t: TestDatabase): Promise<Snapshot> {
  const [rows] = (
    await t.exec(
      `SELECT count(*)::int AS n, md5(COALESCE(string_agg(c::text, E'\\n' ORDER BY c.session_id), '')) AS md5 FROM public.conversation_sessions c`,
    )
  ).rows
  const [flags] = (await t.exec(`SELECT to_regclass('warden.audit_log') IS NOT NULL AS audit, to_regclass('public.y') IS NOT NULL AS y`))
    .rows
  let audit: Snapshot['audit'] = null
  if (flags.audit) {
    const [counts] = // Refusals are audited too (status refused/failed, nothing affected): they are not changes.
      (
        await t.exec(
          `SELECT count(*)::int AS total, (count(*) FILTER (WHERE NOT dry_run))::int AS applied FROM warden.audit_log WHERE status NOT IN ('refused', 'failed') OR rows_affected <> 0`,
        )
      ).rows
    audit = { total: counts.total, applied: counts.applied }
  }
  return { rows: rows.n, md5: rows.md5, audit, yExists: flags.y }
}

/** Runs the work and asserts every row of the session table is identical afterwards, and nothing was audited as applied. */
async function expectNoChange<T>(t: TestDatabase, work: () => Promise<T>): Promise<T> {
  const before = await snapshot(t)
  const result = await work()
  const after = await snapshot(t)
  expect(after, 'the session table, the audit log and table y must be untouched').toEqual(before)
  if (after.audit) expect(after.audit.applied).toBe(0)
  return result
}

/** A login role with a password on that server, and a way to try it with any password. */
async function passwordRole(t: TestDatabase) {
  const hex = randomBytes(4).toString('hex')
  const role = `warden_pw_${hex}`
  const right = `right-${hex}`
  const wrong = `wrong-${hex}`
  await t.exec(`CREATE ROLE "${role}" LOGIN PASSWORD '${right}'`)
  await t.exec(`GRANT SELECT ON public.conversation_sessions TO "${role}"`)
  const roleUrl = (password: string) => {
    const url = new URL(t.url)
    url.username = role
    url.password = password
    return url.toString()
  }
  const tryLogin = async (password: string) => {
    const client = new pg.Client({ connectionString: roleUrl(password), connectionTimeoutMillis: 5000 })
    try {
      await client.connect()
      return (await client.query('SELECT current_user AS who')).rows[0].who as string
    } finally {
      await client.end().catch(() => undefined)
    }
  }
  return { role, right, wrong, roleUrl, tryLogin }
}

/** oclif wraps human errors to the terminal width with " ›" prefixes; undo that to search the message. */
const flat = (text: string) => text.replace(/\s*\n\s*›?\s*/g, ' ').replace(/\s+/g, ' ')
/** Everything but the characters a wrap could insert, for "never printed" checks. */
const compact = (text: string) => text.replace(/[\s›]/g, '')
const show = (result: CliResult) => `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`

/** A refused command: the documented exit code, the message on stderr naming each needle, no stack trace, nothing on stdout. */
function expectRefused(result: CliResult, exitCode: number, ...needles: string[]): void {
  expect(result.code, show(result)).toBe(exitCode)
  expect(result.stdout, 'human mode prints errors on stderr only').toBe('')
  const message = flat(result.stderr)
  for (const needle of needles) expect(message, show(result)).toContain(needle)
  expect(result.stderr, 'a user-facing error, not a crash').not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/)
}

interface Mapping {
  table?: string
  columns?: Record<string, string | string[] | undefined>
  orphanAfter?: string
}

/** A config file holding the conversation_sessions mapping, with the given keys changed. */
function mappingFile(change: Mapping = {}): string {
  const columns = {
    id: 'session_id',
    active: 'is_active',
    startedAt: 'session_start',
    lastSeenAt: 'last_activity_at',
    endedAt: ['session_end', 'ended_at'],
    durationSeconds: 'duration_seconds',
    group: 'agent_role',
    ...change.columns,
  }
  const lines = ['sessions:', `  table: ${JSON.stringify(change.table ?? 'public.conversation_sessions')}`, '  columns:']
  for (const [key, value] of Object.entries(columns)) if (value !== undefined) lines.push(`    ${key}: ${JSON.stringify(value)}`)
  lines.push(`  orphanAfter: ${JSON.stringify(change.orphanAfter ?? '2h')}`)
  return writeConfig(`${lines.join('\n')}\n`)
}

describe('bad input: a clear message, a documented exit code, and no row changed', () => {
  let t: TestDatabase
  /** never migrated: Warden's audit table does not exist there */
  let fresh: TestDatabase
  const roles: string[] = []

  beforeAll(async () => {
    ;[t, fresh] = await Promise.all([createTestDatabase('bad_input'), createTestDatabase('bad_input_unmigrated')])
    await Promise.all([seed(t), seed(fresh)])
    await migrate(t.db, 'warden')
    // One dry run, so the audit log is not empty and "unchanged" means something.
    const dryRun = await runCli(['sessions', 'sweep', '--json', '--database-url', t.url])
    expect(dryRun.code, show(dryRun)).toBe(0)
    expect(parseJson(dryRun)).toMatchObject({ dryRun: true, orphans: 8 })
  })

  afterAll(async () => {
    await Promise.all([t?.drop(), fresh?.drop()])
    if (roles.length === 0) return
    const admin = new pg.Client({ connectionString: adminUrl() })
    await admin.connect()
    try {
      for (const role of roles) await admin.query(`DROP ROLE IF EXISTS "${role}"`)
    } finally {
      await admin.end()
    }
  })

  const sweepApply = (...args: string[]) => runCli(['sessions', 'sweep', '--apply', '--database-url', t.url, ...args])

  describe('a mapping that does not match the catalog (config file via --config): 78', () => {
    it('an unknown table is named, with the tables the schema does have', async () => {
      const result = await expectNoChange(t, () => sweepApply('--config', mappingFile({ table: 'public.chat_sessions' })))
      expectRefused(
        result,
        ExitCode.config,
        'sessions.table = "public.chat_sessions"',
        'no table public.chat_sessions',
        'conversation_sessions',
      )
    })

    it('an unknown column is named, with the columns and types the table does have', async () => {
      const result = await expectNoChange(t, () => sweepApply('--config', mappingFile({ columns: { lastSeenAt: 'last_seen' } })))
      expectRefused(
        result,
        ExitCode.config,
        'sessions.columns.lastSeenAt = "last_seen"',
        'no column last_seen',
        'last_activity_at (timestamp with time zone)',
      )
    })

    it('a text column mapped as active is refused: key, column, its type and "boolean"', async () => {
      const result = await expectNoChange(t, () => sweepApply('--config', mappingFile({ columns: { active: 'status' } })))
      expectRefused(result, ExitCode.config, 'sessions.columns.active = "status"', 'status is text', 'expected boolean')
    })
  })

  it('identifier "x; drop table y" is refused before any SQL, as column or table, from a file (78) or --table (64); table y survives', async () => {
    const results = await expectNoChange(t, () =>
      Promise.all([
        sweepApply('--config', mappingFile({ columns: { group: 'x; drop table y' } })),
        sweepApply('--config', mappingFile({ table: 'x; drop table y' })),
        sweepApply('--table', 'x; drop table y'),
      ]),
    )
    const [column, tableInFile, tableFlag] = results
    expectRefused(column, ExitCode.config, 'sessions.columns.group = "x; drop table y"', 'expected a plain identifier')
    expectRefused(tableInFile, ExitCode.config, 'sessions.table = "x; drop table y"', 'plain identifiers')
    expectRefused(tableFlag, ExitCode.usage, 'sessions.table = "x; drop table y"', '--table', 'plain identifiers')
    expect((await snapshot(t)).yExists).toBe(true)
  })

  it('bad durations name the flag, key or env var and the value: flags 64, config file and env 78', async () => {
    const file = mappingFile({ orphanAfter: '-5m' })
    const [negative, parsecs, inFile, inEnv, olderThan] = await expectNoChange(t, () =>
      Promise.all([
        sweepApply('--orphan-after', '-5m'),
        sweepApply('--orphan-after', '2 parsecs'),
        sweepApply('--config', file),
        runCli(['sessions', 'sweep', '--apply', '--database-url', t.url], { env: { WARDEN_ORPHAN_AFTER: '0s' } }),
        runCli(['sessions', 'close', '--older-than', '2 parsecs', '--yes', '--database-url', t.url]),
      ]),
    )
    expectRefused(negative, ExitCode.usage, 'sessions.orphanAfter = "-5m"', '--orphan-after', 'expected a positive duration')
    expectRefused(parsecs, ExitCode.usage, 'sessions.orphanAfter = "2 parsecs"', '--orphan-after', 'expected a positive duration')
    expectRefused(inFile, ExitCode.config, 'sessions.orphanAfter = "-5m"', file, 'expected a positive duration')
    expectRefused(inEnv, ExitCode.config, 'sessions.orphanAfter = "0s"', 'WARDEN_ORPHAN_AFTER', 'expected a positive duration')
    expectRefused(olderThan, ExitCode.usage, '--older-than "2 parsecs"', 'expected a positive duration')
  })

  it('an unreachable database (closed port on 127.0.0.1) exits 3 naming host:port, never the password', async () => {
    const port = await freePort()
    const secret = `pw-${randomBytes(6).toString('hex')}`
    const url = `postgres://warden:${secret}@127.0.0.1:${port}/app`
    const [viaFlag, viaEnv] = await expectNoChange(t, () =>
      Promise.all([
        runCli(['sessions', 'sweep', '--apply', '--database-url', url]),
        runCli(['sessions', 'sweep', '--apply'], { env: { DATABASE_URL: url } }),
      ]),
    )
    for (const result of [viaFlag, viaEnv]) {
      expectRefused(result, ExitCode.unavailable, `127.0.0.1:${port}`, 'cannot connect to PostgreSQL')
      expect(compact(result.stderr + result.stdout)).not.toContain(secret)
    }
  })

  it('a wrong password exits 3 naming the auth failure and the role, never the password (on a trust-auth test server: on a server of its own that checks)', async () => {
    let target = t
    let own: EmbeddedPostgres | undefined
    try {
      let login = await passwordRole(t)
      roles.push(login.role)
      if (
        await login.tryLogin(login.wrong).then(
          () => true,
          () => false,
        )
      ) {
        // The test server trusts loopback (e.g. CI's second pass on a local PostgreSQL), so it
        // cannot refuse a password: show Warden's message on an embedded server with password auth.
        own = await startEmbeddedPostgres()
        target = existingTestDatabase(own.url)
        await seed(target)
        login = await passwordRole(target)
      }
      // The right password logs in and the wrong one is refused, so the refusal below is the password's.
      expect(await login.tryLogin(login.right)).toBe(login.role)
      await expect(login.tryLogin(login.wrong)).rejects.toMatchObject({ code: '28P01' })

      const result = await expectNoChange(target, () =>
        runCli(['sessions', 'sweep', '--apply', '--database-url', login.roleUrl(login.wrong)]),
      )
      expectRefused(result, ExitCode.unavailable, 'password authentication failed', login.role)
      expect(compact(result.stderr + result.stdout)).not.toContain(login.wrong)
    } finally {
      if (own) {
        await target.drop()
        await own.stop()
      }
    }
  })

  it('--apply together with --dry-run is a usage error (64) naming both', async () => {
    const result = await expectNoChange(t, () => sweepApply('--dry-run'))
    expectRefused(result, ExitCode.usage, '--apply', '--dry-run')
  })

  it('sessions close with no filter, or --all combined with --group, is a usage error (64)', async () => {
    const [none, allAndGroup] = await expectNoChange(t, () =>
      Promise.all([
        runCli(['sessions', 'close', '--yes', '--database-url', t.url]),
        runCli(['sessions', 'close', '--all', '--group', 'support-agent', '--yes', '--database-url', t.url]),
      ]),
    )
    expectRefused(none, ExitCode.usage, 'needs a filter', '--all', '--older-than', '--group', '--id')
    expectRefused(allAndGroup, ExitCode.usage, '--all', 'cannot be combined', '--group')
  })

  it('--batch-size 0 is a usage error (64) with the allowed range, for sweep and close', async () => {
    const [sweep, close] = await expectNoChange(t, () =>
      Promise.all([
        sweepApply('--batch-size', '0'),
        runCli(['sessions', 'close', '--all', '--yes', '--batch-size', '0', '--database-url', t.url]),
      ]),
    )
    for (const result of [sweep, close])
      expectRefused(result, ExitCode.usage, 'sweep.batchSize = "0"', '--batch-size', 'expected an integer from 1 to 100000')
  })

  it('sessions close without --yes and without a terminal aborts (4), points at --yes, and closes nothing', async () => {
    const [all, group] = await expectNoChange(t, () =>
      Promise.all([
        runCli(['sessions', 'close', '--all', '--database-url', t.url]),
        runCli(['sessions', 'close', '--group', 'billing-agent', '--database-url', t.url]),
      ]),
    )
    expectRefused(all, ExitCode.aborted, '11 open session(s)', 'no terminal', '--yes')
    expectRefused(group, ExitCode.aborted, '4 open session(s)', 'billing-agent=4', '--yes')
  })

  it('--id not-a-uuid on a uuid id column is a usage error (64) that names --id and the value', async () => {
    // Sequential: both take the table's close lock, and a concurrent second one would rightly exit 5.
    const withYes = await expectNoChange(t, () => runCli(['sessions', 'close', '--id', 'not-a-uuid', '--yes', '--database-url', t.url]))
    const dryRun = await expectNoChange(t, () => runCli(['sessions', 'close', '--id', 'not-a-uuid', '--dry-run', '--database-url', t.url]))
    for (const result of [withYes, dryRun]) expectRefused(result, ExitCode.usage, '--id', 'not-a-uuid', 'uuid')
  })

  it('an unknown flag or an option value outside its list exits 64, not oclif\'s 2 (Warden\'s "critical")', async () => {
    const [unknown, state] = await expectNoChange(t, () =>
      Promise.all([sweepApply('--bogus'), runCli(['sessions', 'list', '--state', 'zombie', '--database-url', t.url])]),
    )
    expectRefused(unknown, ExitCode.usage, '--bogus')
    expectRefused(state, ExitCode.usage, '--state', 'zombie')
  })

  it('a flag value oclif cannot parse (--limit 0, --sample -1) exits 64 naming the flag, not 70 ("failed")', async () => {
    const [limit, sample] = await expectNoChange(t, () =>
      Promise.all([runCli(['sessions', 'list', '--limit', '0', '--database-url', t.url]), sweepApply('--sample', '-1')]),
    )
    expectRefused(limit, ExitCode.usage, '--limit', 'greater than or equal to 1')
    expectRefused(sample, ExitCode.usage, '--sample')
  })

  it('an unknown command exits 64, not oclif\'s 2 (Warden\'s "critical")', async () => {
    const result = await runCli(['sessions', 'swep', '--apply', '--database-url', t.url])
    expect(result.code, show(result)).toBe(ExitCode.usage)
    expect(flat(result.stderr)).toContain('swep')
  })

  it('--json: an error is one JSON object {error: {kind, exitCode, message}} on stdout, with the same exit code', async () => {
    const port = await freePort()
    const cases: Array<{ args: string[]; exitCode: number; kind: string; mentions: string }> = [
      {
        args: ['sessions', 'sweep', '--apply', '--dry-run', '--database-url', t.url],
        exitCode: ExitCode.usage,
        kind: 'usage',
        mentions: '--dry-run',
      },
      { args: ['sessions', 'sweep', '--bogus', '--database-url', t.url], exitCode: ExitCode.usage, kind: 'usage', mentions: '--bogus' },
      {
        args: ['sessions', 'sweep', '--apply', '--config', mappingFile({ columns: { active: 'is_activ' } }), '--database-url', t.url],
        exitCode: ExitCode.config,
        kind: 'config',
        mentions: 'is_activ',
      },
      {
        args: ['sessions', 'sweep', '--apply', '--database-url', `postgres://warden:pw@127.0.0.1:${port}/app`],
        exitCode: ExitCode.unavailable,
        kind: 'unavailable',
        mentions: `127.0.0.1:${port}`,
      },
      { args: ['sessions', 'close', '--all', '--database-url', t.url], exitCode: ExitCode.aborted, kind: 'aborted', mentions: '--yes' },
    ]
    // vitest sets NODE_ENV=test and runCli passes it on; oclif then (as in development) adds an
    // "UnparsedCommand" warning on stderr when parsing failed. Run as users do.
    const results = await expectNoChange(t, () =>
      Promise.all(cases.map((c) => runCli([...c.args, '--json'], { env: { NODE_ENV: 'production' } }))),
    )
    results.forEach((result, i) => {
      const expected = cases[i]!
      expect(result.code, show(result)).toBe(expected.exitCode)
      const body = parseJson<{ error: { kind: string; exitCode: number; message: string } }>(result)
      expect(Object.keys(body)).toEqual(['error'])
      expect(body.error).toMatchObject({ kind: expected.kind, exitCode: expected.exitCode })
      expect(body.error.message).toContain(expected.mentions)
      expect(result.stderr, `--json prints nothing else (${expected.args.join(' ')})`).toBe('')
    })
  })

  it('sweep --apply (or close --yes) before `db migrate` refuses (78), points at db migrate, and changes nothing', async () => {
    // Sequential: both take the table's close lock.
    const sweep = await expectNoChange(fresh, () => runCli(['sessions', 'sweep', '--apply', '--database-url', fresh.url]))
    expectRefused(sweep, ExitCode.config, 'warden.audit_log does not exist', 'warden db migrate')
    const close = await expectNoChange(fresh, () => runCli(['sessions', 'close', '--all', '--yes', '--database-url', fresh.url]))
    expectRefused(close, ExitCode.config, 'warden.audit_log does not exist', 'warden db migrate')
    const { rows } = await fresh.exec(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'warden'`)
    expect(rows[0].n, "refusing must not create Warden's schema either").toBe(0)
  })
})
