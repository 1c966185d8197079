import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { parseJson, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { waitFor } from './helpers/wait.js'

interface Check {
  name: string
  status: string
  message: string
  evidence: Array<Record<string, unknown>>
  durationMs: number
}
interface DoctorJson {
  exitCode: number
  checks: Check[]
}

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`

/** A session that keeps a transaction open until released. */
async function openTransaction(url: string, applicationName: string) {
  const client = new pg.Client({ connectionString: url, application_name: applicationName })
  await client.connect()
  await client.query('BEGIN')
  await client.query('SELECT 1')
  return {
    client,
    async release() {
      await client.query('ROLLBACK').catch(() => undefined)
      await client.end()
    },
  }
}

/**
 * The checks no other test asserted the status of (orphan-index, timeout-settings,
 * long-transactions), and doctor's -v and --check-timeout, through `warden doctor` as a
 * subprocess. Each test builds the state it needs in a database of its own.
 */
describe('warden doctor: each check status, -v and --check-timeout (CLI subprocess)', () => {
  const databases: TestDatabase[] = []
  const fresh = async (label: string) => {
    const t = await createTestDatabase(label)
    databases.push(t)
    await seedConversationSessions(t, { orphans: 3, live: 2 })
    return t
  }
  const doctor = async (t: TestDatabase, args: string[], checks = '') => {
    const result = await runCli([
      'doctor',
      '--json',
      ...args,
      '--config',
      writeConfig(`database:\n  url: ${t.url}\n${checks ? `checks:\n${checks}` : ''}`),
    ])
    return { result, report: parseJson<DoctorJson>(result) }
  }
  const only = (report: DoctorJson, name: string) => {
    const found = report.checks.filter((c) => c.name === name)
    expect(found, JSON.stringify(report.checks)).toHaveLength(1)
    return found[0]!
  }
  afterAll(async () => {
    await Promise.all(databases.map((t) => t.drop()))
  })

  it('orphan-index: ok naming the index that serves the orphan query; warn with the CREATE INDEX once it is gone and the table is big enough', async () => {
    const t = await fresh('doctor_orphan_index')
    const served = await doctor(t, ['--check', 'orphan-index'])
    expect(served.result.code, show(served.result)).toBe(0)
    expect(only(served.report, 'orphan-index')).toMatchObject({
      status: 'ok',
      message: expect.stringContaining('conversation_sessions_open_silence_idx'),
    })

    await t.exec('DROP INDEX conversation_sessions_open_silence_idx')
    // 5 rows (ANALYZEd by the seed): below the default orphanIndexMinRows (10 000) the table is "small"
    const small = await doctor(t, ['--check', 'orphan-index'])
    expect(small.result.code, show(small.result)).toBe(0)
    expect(only(small.report, 'orphan-index')).toMatchObject({
      status: 'ok',
      message: expect.stringContaining('the table is small (~5 rows)'),
    })

    const big = await doctor(t, ['--check', 'orphan-index'], '  orphanIndexMinRows: 2\n')
    expect(big.result.code, show(big.result)).toBe(1)
    const check = only(big.report, 'orphan-index')
    expect(check.status).toBe('warn')
    expect(check.message).toContain(
      'add one: CREATE INDEX CONCURRENTLY ON "public"."conversation_sessions" ((COALESCE("last_activity_at", "session_start"))) WHERE "is_active"',
    )
  })

  it('timeout-settings: warn when idle_in_transaction_session_timeout is off or longer than the app pool waits, ok when shorter', async () => {
    const t = await fresh('doctor_timeouts')
    const setTimeout = (value: string) => t.exec(`ALTER DATABASE "${t.name}" SET idle_in_transaction_session_timeout = '${value}'`)
    const poolWait = '  appPoolWait: 5s\n'

    await setTimeout('0')
    const off = await doctor(t, ['--check', 'timeout-settings'], poolWait)
    expect(off.result.code, show(off.result)).toBe(1)
    expect(only(off.report, 'timeout-settings')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('idle_in_transaction_session_timeout is off'),
    })

    await setTimeout('30s')
    const long = await doctor(t, ['--check', 'timeout-settings'], poolWait)
    expect(long.result.code, show(long.result)).toBe(1)
    expect(only(long.report, 'timeout-settings')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining("idle_in_transaction_session_timeout (30s) is longer than the app pool's wait (5s)"),
    })

    await setTimeout('2s')
    const ok = await doctor(t, ['--check', 'timeout-settings'], poolWait)
    expect(ok.result.code, show(ok.result)).toBe(0)
    const check = only(ok.report, 'timeout-settings')
    expect(check).toMatchObject({ status: 'ok', message: expect.stringContaining('idle_in_transaction_session_timeout=2s') })
    expect(check.evidence).toContainEqual({ name: 'idle_in_transaction_session_timeout', valueMs: 2000, source: 'database' })
  })

  it('long-transactions: ok with none, warn past warn, crit past crit, naming the application and pid', async () => {
    const t = await fresh('doctor_long_tx')
    const thresholds = '  longTransactions: { warn: 1s, crit: 1h }\n'
    const none = await doctor(t, ['--check', 'long-transactions'], thresholds)
    expect(none.result.code, show(none.result)).toBe(0)
    expect(only(none.report, 'long-transactions')).toMatchObject({ status: 'ok', message: 'no transaction open longer than 1s' })

    const holder = await openTransaction(t.url, 'long-tx-app')
    try {
      const pid = (await holder.client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
      // the transaction's age as PostgreSQL sees it, not a sleep
      const ageOver = (seconds: number) =>
        waitFor(
          async () =>
            (
              await t.exec(`SELECT now() - xact_start > make_interval(secs => $2) AS over FROM pg_stat_activity WHERE pid = $1`, [
                pid,
                seconds,
              ])
            ).rows[0]?.over === true,
          `the held transaction to be older than ${seconds} s`,
          10_000,
        )
      await ageOver(1.2)
      const warn = await doctor(t, ['--check', 'long-transactions'], thresholds)
      expect(warn.result.code, show(warn.result)).toBe(1)
      const check = only(warn.report, 'long-transactions')
      expect(check.status).toBe('warn')
      expect(check.message).toContain(`long-tx-app pid ${pid}`)
      expect(check.evidence).toEqual([expect.objectContaining({ pid, applicationName: 'long-tx-app' })])

      await ageOver(2.2)
      const crit = await doctor(t, ['--check', 'long-transactions'], '  longTransactions: { warn: 1s, crit: 2s }\n')
      expect(crit.result.code, show(crit.result)).toBe(2)
      expect(only(crit.report, 'long-transactions').status).toBe('crit')
    } finally {
      await holder.release()
    }
  })

  it('-v prints the evidence rows of an ok finding too; without it only warnings and criticals show theirs', async () => {
    const t = await fresh('doctor_verbose')
    const run = (extra: string[]) =>
      runCli(['doctor', '--check', 'orphan-index', ...extra, '--config', writeConfig(`database:\n  url: ${t.url}\n`)])
    const plain = await run([])
    expect(plain.code, show(plain)).toBe(0)
    expect(plain.stdout).toMatch(/^ OK {3}orphan-index/m)
    expect(plain.stdout).not.toContain('"definition"')
    for (const flag of ['-v', '--verbose']) {
      const verbose = await run([flag])
      expect(verbose.code, show(verbose)).toBe(0)
      expect(verbose.stdout).toContain('"name":"conversation_sessions_open_silence_idx"')
      expect(verbose.stdout).toContain('"predicate":"is_active"}')
    }
  })

  it('--check-timeout bounds each check: one waiting on a lock fails (3) at that deadline while the others report', async () => {
    const t = await fresh('doctor_check_timeout')
    // the cost-row table: only the dangling-cost-rows check reads it (its lookup is catalog-only)
    await t.exec('CREATE TABLE llm_requests (session_id uuid)')
    const locker = new pg.Client({ connectionString: t.url, application_name: 'locker' })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE llm_requests IN ACCESS EXCLUSIVE MODE')
      const started = Date.now()
      const { result, report } = await doctor(
        t,
        ['--check', 'dangling-cost-rows', '--check', 'timeout-settings', '--check-timeout', '500'],
        '  costRows: { table: public.llm_requests, sessionId: session_id }\n',
      )
      const elapsed = Date.now() - started
      expect(result.code, show(result)).toBe(3)
      const blocked = only(report, 'dangling-cost-rows')
      expect(blocked.status).toBe('error')
      // named by the flag that set the deadline, not database.statementTimeout
      expect(blocked.message).toBe(
        'check could not run: no answer within its deadline of 500 ms (--check-timeout); the database may be overloaded or a lock is in the way',
      )
      expect(blocked.durationMs).toBeGreaterThanOrEqual(500)
      // far below the default 10 s deadline it would otherwise have waited out
      expect(blocked.durationMs).toBeLessThan(8_000)
      expect(elapsed).toBeLessThan(30_000)
      expect(only(report, 'timeout-settings').status).not.toBe('error')
    } finally {
      await locker.query('ROLLBACK')
      await locker.end()
    }
    const refused = await runCli(['doctor', '--check-timeout', '50', '--database-url', t.url])
    expect(refused.code, show(refused)).toBe(64)
    expect(refused.stderr).toContain('--check-timeout')
  })
})
