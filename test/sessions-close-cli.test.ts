import { spawn } from 'node:child_process'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { parseJson, RUN_JS, runCli, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_SHAPE, exampleConfigPath, GROUPS, seedConversationSessions } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const countOpen = async (t: TestDatabase, where = 'true') =>
  (await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active AND ${where}`)).rows[0].n as number

/**
 * `warden sessions close` through its entry point, the CLI as a subprocess: every way of saying
 * yes closes exactly what the filter names, every other way changes nothing, and the invariants
 * hold after each run.
 */
describe('warden sessions close (CLI subprocess)', () => {
  let t: TestDatabase
  const close = (args: string[]) =>
    runCli(['sessions', 'close', '--config', exampleConfigPath('conversation_sessions'), ...args], { env: { WARDEN_DATABASE_URL: t.url } })

  beforeEach(async () => {
    t = await createTestDatabase('close_cli')
    await seedConversationSessions(t, { orphans: 30, live: 12, closed: 6 })
    await migrate(t.db, 'warden')
  })
  afterEach(async () => {
    await t.drop()
  })

  it('--all --yes closes every open session, and the audit row counts them', async () => {
    const open = await countOpen(t)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await close(['--all', '--yes', '--json'])
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<{ dryRun: boolean; matched: number; closed: number; remaining: number; filter: unknown }>(result)
    expect(json).toMatchObject({ dryRun: false, matched: open, closed: open, remaining: 0, filter: { all: true } })
    await expectInvariants(t, before, { closed: open })
    expect(await countOpen(t)).toBe(0)
    const { rows } = await t.exec(`SELECT status, dry_run, rows_matched::int, rows_affected::int FROM warden.audit_log`)
    expect(rows).toEqual([{ status: 'ok', dry_run: false, rows_matched: open, rows_affected: open }])
  })

  it('--group with --older-than closes only that group past that age, and says so on the terminal', async () => {
    const group = GROUPS[1]
    const expected = await countOpen(t, `agent_role = '${group}' AND session_start < now() - interval '4 hours 30 minutes'`)
    expect(expected).toBeGreaterThan(0)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await close(['--group', group, '--older-than', '4h30m', '--yes'])
    expect(result.code, show(result)).toBe(0)
    expect(result.stdout).toContain(`closed ${expected} of ${expected} sessions`)
    expect(result.stdout).toContain(`${group}=${expected}`)
    await expectInvariants(t, before, { closed: expected })
    expect(await countOpen(t, `agent_role = '${group}' AND session_start < now() - interval '4 hours 30 minutes'`)).toBe(0)
    expect(await countOpen(t, `agent_role <> '${group}'`)).toBe(
      before.rows.filter((r) => r.open && !r.text.includes(`"agent_role":"${group}"`)).length,
    )
  })

  it('--id (repeated) closes exactly those sessions', async () => {
    const { rows } = await t.exec(`SELECT session_id::text AS id FROM conversation_sessions WHERE is_active ORDER BY session_id LIMIT 2`)
    const ids = rows.map((r) => r.id as string)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await close(['--id', ids[0]!, '--id', ids[1]!, '--yes', '--json'])
    expect(result.code, show(result)).toBe(0)
    expect(parseJson(result)).toMatchObject({ matched: 2, closed: 2, filter: { ids } })
    await expectInvariants(t, before, { closed: 2 })
    const closed = await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE session_id::text = ANY($1) AND NOT is_active`, [
      ids,
    ])
    expect(closed.rows[0].n).toBe(2)
  })

  it('--max-rows stops after that many, reports the rest, and the audit row says partial', async () => {
    const open = await countOpen(t)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await close(['--all', '--yes', '--max-rows', '5', '--batch-size', '2', '--json'])
    expect(result.code, show(result)).toBe(0)
    expect(parseJson(result)).toMatchObject({ closed: 5, remaining: open - 5, stoppedEarly: 'max-rows', batches: 3 })
    await expectInvariants(t, before, { closed: 5 })
    const { rows } = await t.exec(`SELECT status FROM warden.audit_log`)
    expect(rows).toEqual([{ status: 'partial' }])
  })

  it('--dry-run shows what would close, changes nothing, and is audited as a dry run', async () => {
    const open = await countOpen(t)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await close(['--all', '--dry-run'])
    expect(result.code, show(result)).toBe(0)
    expect(result.stdout).toContain(`DRY RUN: ${open} sessions would be closed`)
    await expectInvariants(t, before, { closed: 0 })
    const { rows } = await t.exec(`SELECT status, dry_run, rows_matched::int FROM warden.audit_log`)
    expect(rows).toEqual([{ status: 'ok', dry_run: true, rows_matched: open }])
  })

  /** The CLI on a real pseudo-terminal (util-linux `script`), answering the confirmation prompt. */
  const onTerminal = (args: string[], answer: string) =>
    new Promise<CliResult>((resolve, reject) => {
      const command = [process.execPath, RUN_JS, 'sessions', 'close', '--config', exampleConfigPath('conversation_sessions'), ...args]
        .map((part) => `'${part.replace(/'/g, `'\\''`)}'`)
        .join(' ')
      const child = spawn('script', ['-qefc', command, '/dev/null'], { env: { ...process.env, WARDEN_DATABASE_URL: t.url, NODE_ENV: '' } })
      let stdout = ''
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        // answer once the prompt is on the terminal
        if (/\[y\/N\]/.test(stdout) && !child.stdin.writableEnded) child.stdin.end(`${answer}\n`)
      })
      child.on('error', reject)
      child.on('close', (code) => resolve({ code, signal: null, stdout, stderr: '' }))
    })

  it('on a terminal, "y" at the prompt closes what it showed; "n" changes nothing and exits 4', async () => {
    const group = GROUPS[0]
    const expected = await countOpen(t, `agent_role = '${group}'`)
    let before = await snapshotTable(t, CONVERSATION_SHAPE)
    const no = await onTerminal(['--group', group], 'n')
    expect(no.code, show(no)).toBe(4)
    expect(no.stdout).toContain(`Close ${expected} open session(s) of public.conversation_sessions`)
    await expectInvariants(t, before, { closed: 0 })

    before = await snapshotTable(t, CONVERSATION_SHAPE)
    const yes = await onTerminal(['--group', group], 'y')
    expect(yes.code, show(yes)).toBe(0)
    expect(yes.stdout).toContain(`closed ${expected} of ${expected} sessions`)
    await expectInvariants(t, before, { closed: expected })
  })
})
