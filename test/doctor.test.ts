import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { runChecks } from '../src/checks/run.js'
import { parseJson, runCli, writeConfig } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { sleep, waitFor } from './helpers/wait.js'

interface DoctorJson {
  status: string
  exitCode: number
  verdict: string
  checks: Array<{ name: string; status: string; message: string; evidence: Array<Record<string, unknown>> }>
}

/** A misbehaving chat handler: opens a transaction, reads, then awaits a slow "LLM" while holding it. */
async function holdTransactionAcrossLlmCall(url: string, llmMs: number): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: url, application_name: 'hold-app' })
  await client.connect()
  await client.query('BEGIN')
  await client.query(`SELECT count(*) FROM conversation_sessions WHERE agent_role = 'support-agent'`)
  await sleep(llmMs) // the "LLM call", transaction still open
  return {
    async release() {
      await client.query('COMMIT').catch(() => undefined)
      await client.end()
    },
  }
}

const config = (url: string, extra = '') =>
  writeConfig(`database:
  url: ${url}
checks:
  idleInTransaction: { warn: 1s, crit: 2s }
  orphanedSessions: { warn: 1, crit: 1000 }
${extra}`)

describe('warden doctor (real PostgreSQL, CLI subprocess)', () => {
  const t = useTestDatabase('doctor', async (t) => {
    await seedConversationSessions(t, { orphans: 8, live: 4 })
  })

  it('names the app holding a transaction across an LLM call, its transaction age and last query, and exits 2 when critical', async () => {
    const holder = await holdTransactionAcrossLlmCall(t.url, 2200)
    try {
      const result = await runCli(['doctor', '--json', '--config', config(t.url)])
      expect(result.code, result.stderr).toBe(2)
      const report = parseJson<DoctorJson>(result)
      const idle = report.checks.find((c) => c.name === 'idle-in-transaction')!
      expect(idle.status).toBe('crit')
      expect(idle.message).toContain('hold-app')
      expect(idle.message).toContain("agent_role = 'support-agent'")
      expect(idle.evidence[0]).toMatchObject({ applicationName: 'hold-app', state: 'idle in transaction' })
      expect(idle.evidence[0]!.transactionSeconds as number).toBeGreaterThanOrEqual(2)
      expect(report.checks.find((c) => c.name === 'orphaned-sessions')).toMatchObject({ status: 'warn' })
      expect(report.verdict).toMatch(/^CRITICAL/)

      const human = await runCli(['doctor', '--config', config(t.url)])
      expect(human.code).toBe(2)
      expect(human.stdout).toMatch(/CRIT {2}idle-in-transaction/)
      expect(human.stdout).toMatch(/hold-app pid \d+/)
    } finally {
      await holder.release()
    }
  })

  it('exits 1 when the worst finding is a warning, and 0 when all selected checks are ok', async () => {
    const warn = await runCli(['doctor', '--json', '--check', 'orphaned-sessions', '--config', config(t.url)])
    expect(warn.code).toBe(1)
    expect(parseJson<DoctorJson>(warn).checks.map((c) => c.name)).toEqual(['orphaned-sessions'])
    const ok = await runCli(['doctor', '--check', 'idle-in-transaction', '--check', 'blocked-backends', '--config', config(t.url)])
    expect(ok.code, ok.stdout + ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/^OK: 2 ok/m)
  })

  it('reports a blocked backend and who blocks it', async () => {
    const holder = new pg.Client({ connectionString: t.url, application_name: 'lock-holder' })
    const waiter = new pg.Client({ connectionString: t.url, application_name: 'lock-waiter' })
    await Promise.all([holder.connect(), waiter.connect()])
    try {
      await holder.query('BEGIN')
      await holder.query(
        'UPDATE conversation_sessions SET last_activity_at = now() WHERE session_id = (SELECT session_id FROM conversation_sessions ORDER BY session_id LIMIT 1)',
      )
      const blocked = waiter.query(
        'UPDATE conversation_sessions SET last_activity_at = now() WHERE session_id = (SELECT session_id FROM conversation_sessions ORDER BY session_id LIMIT 1)',
      )
      // the waiter queued on the holder's row lock for longer than the warn threshold, as PostgreSQL sees it
      await waitFor(
        async () =>
          (
            await t.exec(
              `SELECT 1 FROM pg_stat_activity WHERE application_name = 'lock-waiter' AND wait_event_type = 'Lock'
                  AND now() - COALESCE(query_start, state_change) > interval '150 milliseconds'`,
            )
          ).rowCount === 1,
        'lock-waiter to wait on the lock for 150 ms',
      )
      const { config: loaded } = loadConfig({ env: {}, configPath: config(t.url, '  blockedBackends: { warn: 100ms, crit: 1h }') })
      const report = await runChecks(t.db, loaded, { only: ['blocked-backends'] })
      expect(report.checks[0]).toMatchObject({ name: 'blocked-backends', status: 'warn' })
      expect(report.checks[0]!.message).toMatch(/lock-waiter pid \d+ .* blocked by lock-holder pid \d+ \(idle in transaction\)/)
      await holder.query('COMMIT')
      await blocked
    } finally {
      await Promise.all([holder.end(), waiter.end()])
    }
  })

  it('isolates a failing check: it reports itself, the others still run, and the exit code is 3', async () => {
    const path = config(t.url, '  costRows: { table: public.llm_requests, sessionId: session_id }')
    const result = await runCli(['doctor', '--json', '--check', 'dangling-cost-rows', '--check', 'connection-headroom', '--config', path])
    expect(result.code).toBe(3)
    const report = parseJson<DoctorJson>(result)
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['connection-headroom', 'ok'],
      ['dangling-cost-rows', 'error'],
    ])
    expect(report.checks[1]!.message).toContain('checks.costRows.table = "public.llm_requests": no such table')
  })

  it('finds cost rows that point at no session, and owners with several open sessions', async () => {
    await t.exec(`CREATE TABLE IF NOT EXISTS llm_requests (id bigserial PRIMARY KEY, session_id uuid, tokens int)`)
    await t.exec(`INSERT INTO llm_requests (session_id, tokens) SELECT session_id, 10 FROM conversation_sessions LIMIT 3`)
    await t.exec(
      `INSERT INTO llm_requests (session_id, tokens) VALUES ('00000000-0000-4000-8000-000000000001', 5), ('00000000-0000-4000-8000-000000000001', 7)`,
    )
    const path = writeConfig(`database: { url: ${t.url} }
sessions:
  table: public.conversation_sessions
  columns: { id: session_id, active: is_active, startedAt: session_start, lastSeenAt: last_activity_at, endedAt: [session_end, ended_at], owner: user_id }
checks:
  costRows: { table: public.llm_requests, sessionId: session_id }
`)
    const result = await runCli([
      'doctor',
      '--json',
      '--check',
      'dangling-cost-rows',
      '--check',
      'duplicate-open-sessions',
      '--config',
      path,
    ])
    expect(result.code, result.stderr).toBe(1)
    const report = parseJson<DoctorJson>(result)
    const dangling = report.checks.find((c) => c.name === 'dangling-cost-rows')!
    expect(dangling.status).toBe('warn')
    expect(dangling.evidence[0]).toEqual({ dangling: 2, sampleSessionIds: ['00000000-0000-4000-8000-000000000001'] })
    // 12 open sessions over users user-(i % 97): some users own two
    const duplicates = report.checks.find((c) => c.name === 'duplicate-open-sessions')!
    const { rows } = await t.exec(
      `SELECT count(*)::int AS n FROM (SELECT user_id FROM conversation_sessions WHERE is_active GROUP BY 1 HAVING count(*) > 1) d`,
    )
    expect(rows[0].n).toBeGreaterThan(0)
    expect(duplicates.status).toBe('warn')
    expect(duplicates.evidence).toHaveLength(rows[0].n)
  })

  it('bad input is "could not run" (3): unknown --check, warn above crit, unreachable database', async () => {
    const [unknown, inverted, unreachable] = await Promise.all([
      runCli(['doctor', '--check', 'nope', '--config', config(t.url)]),
      runCli(['doctor', '--config', config(t.url, '  longTransactions: { warn: 10m, crit: 1m }')]),
      runCli(['doctor', '--database-url', 'postgres://warden:secret@127.0.0.1:1/x']),
    ])
    expect(unknown.code).toBe(3)
    expect(unknown.stderr).toMatch(/unknown check "nope"; known checks: orphaned-sessions, idle-in-transaction/)
    expect(inverted.code).toBe(3)
    expect(inverted.stderr).toMatch(/checks\.longTransactions\.warn = "10m" .*expected warn ≤ crit \(crit is 60 s\)/)
    expect(unreachable.code).toBe(3)
    // every check of the unreachable target FAILs and says why
    expect(unreachable.stdout.replace(/\s+/g, ' ')).toMatch(/cannot connect to PostgreSQL at postgres:\/\/warden:\*{5}@127\.0\.0\.1:1\/x/)
    expect(unreachable.stderr + unreachable.stdout).not.toContain('secret')
  })
})
