import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ExitCode } from '../src/core/errors.js'
import { migrate } from '../src/db/migrate.js'
import { ADAPTIVE_MAX, ADAPTIVE_START, nextAdaptiveSize } from '../src/sessions/close-sessions.js'
import { parseJson, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_COLUMNS, CONVERSATION_SHAPE, exampleConfigPath, seedConversationSessions } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'
import { serviceConfig, startTestService, type TestService } from './helpers/server.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const CONFIG = exampleConfigPath('conversation_sessions')

/** The example mapping with another sweep section: the mapping is the same as CONFIG's. */
const mappingWith = (sweep: string) =>
  writeConfig(`sessions:\n  table: public.conversation_sessions\n  columns: ${CONVERSATION_COLUMNS}\n  orphanAfter: 2h\nsweep:\n${sweep}`)

interface SweepJson {
  orphans: number
  closed: number
  remaining: number
  batches: number
  batching: { mode: 'adaptive'; targetMs: number } | { mode: 'fixed'; batchSize: number }
  maxBatchSize: number
  maxBatchMs: number
  skipped: { count: number; rows: Array<{ id: string; error: string }> }
}

const auditDetails = async (t: TestDatabase) =>
  (await t.exec(`SELECT status, rows_affected::int AS affected, details FROM warden.audit_log WHERE NOT dry_run ORDER BY id`))
    .rows as Array<{
    status: string
    affected: number
    details: Record<string, unknown>
  }>

describe('nextAdaptiveSize', () => {
  it('aims at the target from the measured rate, at most ×4 or ÷4 a step, within 1..ADAPTIVE_MAX', () => {
    // 1000 rows in 100 ms, 300 ms wanted: 3000
    expect(nextAdaptiveSize(1000, 1000, 100, 300)).toBe(3000)
    // 1000 rows in 1 ms would ask for 300000: growth stops at ×4
    expect(nextAdaptiveSize(1000, 1000, 1, 300)).toBe(4000)
    // 1000 rows in 10 s would ask for 30: shrink stops at ÷4
    expect(nextAdaptiveSize(1000, 1000, 10_000, 300)).toBe(250)
    expect(nextAdaptiveSize(80_000, 80_000, 100, 300)).toBe(ADAPTIVE_MAX)
    expect(nextAdaptiveSize(2, 2, 10_000, 300)).toBe(1)
    // a batch too fast to time grows by the step
    expect(nextAdaptiveSize(1000, 1000, 0, 300)).toBe(4000)
  })
})

/**
 * Adaptive and fixed batches through the entry points (CLI subprocess, API over HTTP), with the
 * table checked by SQL after every mutation.
 */
describe('adaptive sweep batches (CLI subprocess)', () => {
  let t: TestDatabase
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { WARDEN_DATABASE_URL: t.url, ...env } })

  beforeEach(async () => {
    t = await createTestDatabase('adaptive')
    await seedConversationSessions(t, { orphans: 6000, live: 300, closed: 200 })
    await migrate(t.db, 'warden')
  })
  afterEach(async () => {
    await t.drop()
  })

  it('without a batch size, batches grow from the start toward sweep.batchTarget and close exactly the orphans', async () => {
    // A generous target, so that a loaded test machine still grows: 1000 rows taking 2 s would be a broken server.
    const config = mappingWith('  batchTarget: 2s\n')
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--json', '--config', config])
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<SweepJson>(result)
    expect(json).toMatchObject({ orphans: 6000, closed: 6000, remaining: 0, batching: { mode: 'adaptive', targetMs: 2000 } })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 6000 })
    expect(json.maxBatchSize).toBeGreaterThan(ADAPTIVE_START)
    // grown at most ×4 a batch: 1000, ≤ 4000, ≤ 16000 …
    expect(json.maxBatchSize).toBeLessThanOrEqual(ADAPTIVE_START * 4 ** (json.batches - 1))
    expect(json.batches).toBeGreaterThanOrEqual(2)
    expect(json.batches).toBeLessThan(6000 / ADAPTIVE_START)
    expect(json.maxBatchMs).toBeGreaterThan(0)
    const [audit, ...more] = await auditDetails(t)
    expect(more).toEqual([])
    expect(audit).toMatchObject({
      status: 'ok',
      affected: 6000,
      details: { batches: json.batches, batching: { mode: 'adaptive', targetMs: 2000 }, maxBatchSize: json.maxBatchSize },
    })
  })

  it('the human output says adaptive with the default 300 ms target, the largest batch and the longest', async () => {
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--config', CONFIG])
    expect(result.code, show(result)).toBe(0)
    expect(result.stdout).toContain('closed 6000 of 6000 orphaned sessions')
    expect(result.stdout).toMatch(/^batches: adaptive toward 300 ms each \(sweep\.batchTarget\); largest \d+ rows, longest \d+ ms$/m)
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 6000 })
    const [audit] = await auditDetails(t)
    expect(audit!.details).toMatchObject({ batching: { mode: 'adaptive', targetMs: 300 } })
  })

  it.each([
    ['--batch-size 50', ['--batch-size', '50'], {}, CONFIG],
    ['WARDEN_BATCH_SIZE=50', [], { WARDEN_BATCH_SIZE: '50' }, CONFIG],
    ['sweep.batchSize: 50 in the file (batchTarget ignored)', [], {}, 'file'],
  ])('%s keeps fixed batches: exactly ceil(N/50) of them, mode fixed', async (_name, args, env, configPath) => {
    // 6000 is a multiple of 50: close 5990 so the last batch is a short one
    await t.exec(`UPDATE conversation_sessions SET is_active = false, session_end = now(), ended_at = now(), duration_seconds = 1
                   WHERE session_id IN (SELECT session_id FROM conversation_sessions WHERE is_active ORDER BY last_activity_at LIMIT 10)`)
    const orphans = 5990
    const config = configPath === 'file' ? mappingWith('  batchSize: 50\n  batchTarget: 5s\n') : configPath
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--json', '--config', config, ...args], env)
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<SweepJson>(result)
    expect(json).toMatchObject({
      orphans,
      closed: orphans,
      remaining: 0,
      batches: Math.ceil(orphans / 50),
      batching: { mode: 'fixed', batchSize: 50 },
      maxBatchSize: 50,
    })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: orphans })
    const [audit] = await auditDetails(t)
    expect(audit!.details).toMatchObject({ batches: 120, batching: { mode: 'fixed', batchSize: 50 }, maxBatchSize: 50 })
  })

  it('sessions close --all without --batch-size is adaptive too; with it, fixed', async () => {
    const open = 6300
    let before = await snapshotTable(t, CONVERSATION_SHAPE)
    const fixed = await cli([
      'sessions',
      'close',
      '--all',
      '--yes',
      '--json',
      '--max-rows',
      '1000',
      '--batch-size',
      '300',
      '--config',
      CONFIG,
    ])
    expect(fixed.code, show(fixed)).toBe(0)
    expect(parseJson<SweepJson>(fixed)).toMatchObject({
      closed: 1000,
      batches: 4,
      batching: { mode: 'fixed', batchSize: 300 },
      maxBatchSize: 300,
    })
    await expectInvariants(t, before, { closed: 1000 })
    before = await snapshotTable(t, CONVERSATION_SHAPE)
    const adaptive = await cli(['sessions', 'close', '--all', '--yes', '--json', '--config', mappingWith('  batchTarget: 2s\n')])
    expect(adaptive.code, show(adaptive)).toBe(0)
    const json = parseJson<SweepJson>(adaptive)
    expect(json).toMatchObject({ closed: open - 1000, remaining: 0, batching: { mode: 'adaptive', targetMs: 2000 } })
    expect(json.maxBatchSize).toBeGreaterThan(ADAPTIVE_START)
    await expectInvariants(t, before, { closed: open - 1000 })
  })

  it('--max-rows caps adaptive batches: never more than what is left to close', async () => {
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli([
      'sessions',
      'sweep',
      '--apply',
      '--json',
      '--max-rows',
      '2500',
      '--config',
      mappingWith('  batchTarget: 2s\n'),
    ])
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<SweepJson & { stoppedEarly: string }>(result)
    // 1000, then at most 1500 (what --max-rows leaves), whatever the rate asked for
    expect(json).toMatchObject({ closed: 2500, remaining: 3500, stoppedEarly: 'max-rows', batches: 2, maxBatchSize: 1500 })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 2500 })
  })

  it.each([
    ['0', 'sweep.batchTarget = 0'],
    ["'abc'", 'sweep.batchTarget = "abc"'],
    ['-300ms', 'sweep.batchTarget = "-300ms"'],
    ['-1', 'sweep.batchTarget = -1'],
  ])('sweep.batchTarget: %s exits 78 naming the key, the value and what is expected, and changes nothing', async (value, named) => {
    const config = mappingWith(`  batchTarget: ${value}\n`)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--config', config])
    expect(result.code, show(result)).toBe(ExitCode.config)
    expect(result.stderr).toContain(named)
    expect(result.stderr).toContain(`config file ${config}`)
    expect(result.stderr).toContain('expected a positive duration')
    const after = await snapshotTable(t, CONVERSATION_SHAPE)
    expect(after.rows).toEqual(before.rows)
    const { rows } = await t.exec(`SELECT count(*)::int AS n FROM warden.audit_log`)
    expect(rows[0].n).toBe(0)
  })

  it('--batch-target and WARDEN_BATCH_TARGET set the time per adaptive batch (flag over env over file); a bad one is refused naming the flag', async () => {
    const config = mappingWith('  batchTarget: 2s\n')
    const dry = (args: string[], env: Record<string, string> = {}) => cli(['sessions', 'sweep', '--json', '--config', config, ...args], env)
    const fromEnv = await dry([], { WARDEN_BATCH_TARGET: '750ms' })
    expect(fromEnv.code, show(fromEnv)).toBe(0)
    expect(parseJson<SweepJson>(fromEnv).batching).toEqual({ mode: 'adaptive', targetMs: 750 })
    const fromFlag = await dry(['--batch-target', '1.5s'], { WARDEN_BATCH_TARGET: '750ms' })
    expect(parseJson<SweepJson>(fromFlag).batching).toEqual({ mode: 'adaptive', targetMs: 1500 })
    // applied: the run reports the target it used, and the table keeps every invariant
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const applied = await cli(['sessions', 'sweep', '--apply', '--json', '--config', config, '--batch-target', '100ms'])
    expect(applied.code, show(applied)).toBe(0)
    const json = parseJson<SweepJson>(applied)
    expect(json.batching).toEqual({ mode: 'adaptive', targetMs: 100 })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: json.closed })
    expect(json.closed).toBe(json.orphans)
    const closeDry = await cli(['sessions', 'close', '--all', '--dry-run', '--json', '--config', config, '--batch-target', '250ms'])
    expect(closeDry.code, show(closeDry)).toBe(0)
    expect(parseJson<SweepJson>(closeDry).batching).toEqual({ mode: 'adaptive', targetMs: 250 })
    const refused = await cli(['sessions', 'sweep', '--apply', '--config', config, '--batch-target', 'soon'])
    expect(refused.code, show(refused)).toBe(ExitCode.usage)
    expect(refused.stderr).toContain('--batch-target')
    expect(refused.stderr).toContain('"soon"')
  })

  it('a poison row among the first adaptive batch is narrowed down and set aside; the rest is swept and batches still grow', async () => {
    await t.exec(
      `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
       VALUES ('00000000-0000-0000-0000-000000000bad', 'poison', 'support-agent', true, '1900-01-01', '1900-01-02')`,
    )
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const result = await cli(['sessions', 'sweep', '--apply', '--json', '--config', mappingWith('  batchTarget: 2s\n')])
    expect(result.code, show(result)).toBe(0)
    const json = parseJson<SweepJson>(result)
    expect(json).toMatchObject({
      orphans: 6001,
      closed: 6000,
      remaining: 1,
      batching: { mode: 'adaptive', targetMs: 2000 },
      skipped: { count: 1, rows: [{ id: '00000000-0000-0000-0000-000000000bad', error: 'integer out of range' }] },
    })
    expect(json.maxBatchSize).toBeGreaterThan(ADAPTIVE_START)
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 6000 })
    const poison = await t.exec(`SELECT is_active FROM conversation_sessions WHERE user_id = 'poison'`)
    expect(poison.rows).toEqual([{ is_active: true }])
    const [audit] = await auditDetails(t)
    expect(audit).toMatchObject({ status: 'partial', affected: 6000, details: { batching: { mode: 'adaptive', targetMs: 2000 } } })
  })
})

describe('adaptive sweep batches (API over HTTP)', () => {
  let t: TestDatabase
  let api: TestService
  beforeEach(async () => {
    t = await createTestDatabase('adaptive_api')
    await seedConversationSessions(t, { orphans: 3000, live: 100, closed: 50 })
    await migrate(t.db, 'warden')
    api = await startTestService(serviceConfig(t.url, { extra: 'sweep:\n  batchTarget: 2s\n' }))
  })
  afterEach(async () => {
    await api?.close()
    await t?.drop()
  })

  it('POST /api/sweeps without batchSize adapts; with {"batchSize": 40} batches are fixed; the responses and audit rows say which', async () => {
    let before = await snapshotTable(t, CONVERSATION_SHAPE)
    const first = await api.post('/api/sweeps', { apply: true, maxRows: 1000, batchSize: 40 })
    const fixed = (await first.json()) as SweepJson
    expect(first.status, JSON.stringify(fixed)).toBe(200)
    expect(fixed).toMatchObject({ closed: 1000, batches: 25, batching: { mode: 'fixed', batchSize: 40 }, maxBatchSize: 40 })
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 1000 })

    before = await snapshotTable(t, CONVERSATION_SHAPE)
    const second = await api.post('/api/sweeps', { apply: true })
    const adaptive = (await second.json()) as SweepJson
    expect(second.status, JSON.stringify(adaptive)).toBe(200)
    expect(adaptive).toMatchObject({ closed: 2000, remaining: 0, batching: { mode: 'adaptive', targetMs: 2000 } })
    expect(adaptive.maxBatchSize).toBeGreaterThan(ADAPTIVE_START)
    await expectInvariants(t, before, { activeAfter: before.at - 7200, closed: 2000 })

    const audits = await auditDetails(t)
    expect(audits.map((a) => a.details)).toEqual([
      expect.objectContaining({ batching: { mode: 'fixed', batchSize: 40 }, maxBatchSize: 40 }),
      expect.objectContaining({ batching: { mode: 'adaptive', targetMs: 2000 }, maxBatchSize: adaptive.maxBatchSize }),
    ])
  })
})
