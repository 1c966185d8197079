import { once } from 'node:events'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { parseJson, runCli, spawnCli } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { orphanCount, rowStates, seedConversationSessions } from './helpers/fixtures.js'
import { waitFor } from './helpers/wait.js'

const ORPHANS = 40_000

/** An applied sweep that has closed at least `min` rows so far, per its audit row. */
const runningSweep = (t: TestDatabase, min: number) => async () => {
  const { rows } = await t.exec(`SELECT id, rows_affected::int AS n FROM warden.audit_log WHERE status = 'running' AND NOT dry_run`)
  return rows[0] && rows[0].n >= min ? rows[0] : undefined
}

describe('sweeps as separate processes (real CLI, real PostgreSQL)', () => {
  let t: TestDatabase
  beforeEach(async () => {
    t = await createTestDatabase('procs')
    await seedConversationSessions(t, { orphans: ORPHANS, live: 100 })
    await migrate(t.db, 'warden')
  })
  afterEach(async () => {
    await t.drop()
  })

  it('a second sweep while one is running exits 5 with "another sweep is running" and changes nothing itself', async () => {
    const first = spawnCli(['sessions', 'sweep', '--apply', '--json', '--batch-size', '10', '--database-url', t.url])
    let firstOut = ''
    first.stdout!.on('data', (chunk) => (firstOut += chunk))
    const firstExit = once(first, 'close')
    await waitFor(runningSweep(t, 1), 'the first sweep to start closing')

    const second = await runCli(['sessions', 'sweep', '--apply', '--database-url', t.url])
    expect(second.code).toBe(5)
    expect(second.stderr).toMatch(/another sweep or close is running on public\.conversation_sessions/)
    const secondJson = await runCli(['sessions', 'sweep', '--apply', '--json', '--database-url', t.url])
    expect(secondJson.code).toBe(5)
    expect(parseJson(secondJson)).toMatchObject({ error: { kind: 'locked', exitCode: 5 } })

    const [code] = await firstExit
    expect(code).toBe(0)
    expect(JSON.parse(firstOut)).toMatchObject({ orphans: ORPHANS, closed: ORPHANS, remaining: 0 })
    // one run that did the work; the two refused ones are audited as refused, having changed nothing
    const { rows } = await t.exec(`SELECT status, rows_affected::int AS n FROM warden.audit_log WHERE NOT dry_run ORDER BY id`)
    expect(rows.filter((r) => r.status !== 'refused')).toEqual([{ status: 'ok', n: ORPHANS }])
    expect(rows.filter((r) => r.status === 'refused')).toEqual([
      { status: 'refused', n: 0 },
      { status: 'refused', n: 0 },
    ])
    expect(await rowStates(t)).toEqual({ open: 100, closed: ORPHANS })
  })

  it('kill -9 mid-run leaves every row fully closed or untouched, the audit count exact, and the next run finishes the job', async () => {
    const victim = spawnCli(['sessions', 'sweep', '--apply', '--batch-size', '10', '--database-url', t.url])
    const exited = once(victim, 'close')
    await waitFor(runningSweep(t, 200), 'the sweep to close some rows')
    victim.kill('SIGKILL')
    const [, signal] = await exited
    expect(signal).toBe('SIGKILL')
    // The killed process's backend may finish the statement in flight; wait until it is gone.
    await waitFor(async () => {
      const { rows } = await t.exec(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'warden'`,
      )
      return rows[0].n === 0 ? true : undefined
    }, 'the killed sweep backend to exit')

    const states = await rowStates(t)
    expect(states.inconsistent).toBeUndefined()
    expect(states.closed).toBeGreaterThan(0)
    expect(states.closed).toBeLessThan(ORPHANS)
    const { rows: audit } = await t.exec(`SELECT rows_affected::int AS n, status FROM warden.audit_log WHERE NOT dry_run`)
    expect(audit).toEqual([{ n: states.closed, status: 'running' }])

    const next = await runCli(['sessions', 'sweep', '--apply', '--json', '--database-url', t.url])
    expect(next.code, next.stderr).toBe(0)
    expect(parseJson(next)).toMatchObject({ orphans: ORPHANS - states.closed!, closed: ORPHANS - states.closed!, remaining: 0 })
    expect(await orphanCount(t)).toBe(0)
    expect(await rowStates(t)).toEqual({ open: 100, closed: ORPHANS })
    const { rows: after } = await t.exec(`SELECT status, rows_affected::int AS n FROM warden.audit_log WHERE NOT dry_run ORDER BY id`)
    expect(after).toEqual([
      { status: 'aborted', n: states.closed },
      { status: 'ok', n: ORPHANS - states.closed! },
    ])
  })
})
