import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { parseJson, runCli, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { exampleConfigPath, seedConversationSessions } from './helpers/fixtures.js'
import { serviceConfig, startTestService, valueOf, type TestService } from './helpers/server.js'
import { sleep, waitFor } from './helpers/wait.js'

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`
const CONFIG = exampleConfigPath('conversation_sessions')

/**
 * Figures Warden reports, each against an independent reading taken at the same moment: SQL the
 * test writes itself, or what the test itself did.
 */
describe('figures that are true and fresh', () => {
  let t: TestDatabase
  const cli = (args: string[]) => runCli([...args, '--config', CONFIG], { env: { WARDEN_DATABASE_URL: t.url } })

  beforeAll(async () => {
    t = await createTestDatabase('fidelity')
    await seedConversationSessions(t, { orphans: 4, live: 3, closed: 2 })
    // an orphan that started 19 days ago: outside a 7-day window, still open
    await t.exec(
      `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
       VALUES (gen_random_uuid(), 'old', 'support-agent', true, now() - interval '19 days', now() - interval '18 days')`,
    )
    await migrate(t.db, 'warden')
  })
  afterAll(async () => {
    await t?.drop()
  })

  it('sessions stats shows open sessions that started before the window as an "older, still open" row', async () => {
    const result = await cli(['sessions', 'stats', '--days', '7', '--json'])
    expect(result.code, show(result)).toBe(0)
    const { rows } = parseJson<{ rows: Array<{ day: string; total: number; stillActive: number; orphaned: number }> }>(result)
    const sql = (
      await t.exec(
        `SELECT count(*)::int AS n, (count(*) FILTER (WHERE last_activity_at < now() - interval '2 hours'))::int AS orphans
           FROM conversation_sessions WHERE is_active AND session_start < date_trunc('day', now()) - interval '6 days'`,
      )
    ).rows[0]
    expect(rows.find((row) => row.day === 'older')).toEqual({
      day: 'older',
      group: 'all',
      total: sql.n,
      avgDurationSeconds: null,
      stillActive: sql.n,
      orphaned: sql.orphans,
    })
    expect(sql.n).toBe(1)
    const human = await cli(['sessions', 'stats', '--days', '7'])
    expect(human.stdout).toMatch(/older, still open\s+1\s+-\s+1\s+1/)
  })

  it('sessions list says how many there are in all, beyond the page', async () => {
    const total = (await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active`)).rows[0].n
    const json = parseJson<{ count: number; total: number; hasMore: boolean }>(await cli(['sessions', 'list', '--limit', '2', '--json']))
    expect(json).toEqual(expect.objectContaining({ count: 2, total, hasMore: true }))
    const human = await cli(['sessions', 'list', '--limit', '2'])
    expect(human.stdout).toContain(`… ${total - 2} more (${total} in all)`)
  })

  it('the probe gives an aborted transaction its age, not 0', async () => {
    const client = new pg.Client({ connectionString: t.url, application_name: 'aborted-app' })
    await client.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT 1/0').catch(() => undefined)
      const pid = (await t.exec(`SELECT pid FROM pg_stat_activity WHERE application_name = 'aborted-app'`)).rows[0].pid as number
      // an aborted transaction has no xact_start: its state_change is when it failed
      await waitFor(
        async () =>
          (
            await t.exec(
              `SELECT now() - state_change > interval '1.1 seconds' AS old FROM pg_stat_activity
                WHERE pid = $1 AND state = 'idle in transaction (aborted)'`,
              [pid],
            )
          ).rows[0]?.old === true,
        'the aborted transaction to be idle for 1.1 s',
      )
      const probe = parseJson<{
        server: { idleInTransaction: Array<{ applicationName: string; aborted: boolean; transactionSeconds: number }> }
      }>(await cli(['pool', 'probe', '--json', '--acquire-timeout', '2s']))
      const held = probe.server.idleInTransaction.find((row) => row.applicationName === 'aborted-app')
      expect(held).toMatchObject({ aborted: true })
      expect(held!.transactionSeconds).toBeGreaterThanOrEqual(1)
    } finally {
      await client.end()
    }
  })

  describe('warden serve with a session table locked', () => {
    let api: TestService
    beforeAll(async () => {
      // scrapeWait far above the stuck collector's deadline: a scrape that waited for it would take over 1 s
      api = await startTestService(
        serviceConfig(t.url, { server: { collectInterval: '60s', freshFor: '200ms', collectTimeout: '1s', scrapeWait: '3s' } }),
      )
    })
    afterAll(async () => {
      await api?.close()
    })

    it('costs a scrape the wait only until the stuck collector has missed its deadline; the other gauges stay fresh', async () => {
      const locker = new pg.Client({ connectionString: t.url, application_name: 'locker' })
      await locker.connect()
      try {
        await locker.query('BEGIN')
        await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
        await waitFor(
          async () => valueOf((await api.scrape()).samples, 'warden_collector_success', { target: 'default', collector: 'sessions' }) === 0,
          'the sessions collector to miss its deadline on the lock',
          20_000,
          100,
        )
        for (let i = 0; i < 5; i++) {
          await sleep(300) // past freshFor: every scrape below starts a refresh
          const appName = `fresh-while-locked-${i}`
          const newcomer = new pg.Client({ connectionString: t.url, application_name: appName })
          await newcomer.connect()
          try {
            const started = performance.now()
            const { samples } = await api.scrape()
            const elapsedMs = performance.now() - started
            const { rows } = await t.exec(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'`,
              [appName],
            )
            expect(rows[0].n).toBe(1)
            // waited for the collectors that answer (the newcomer is on this very scrape), not for the stuck one
            expect(valueOf(samples, 'warden_pg_connections', { target: 'default', state: 'idle', application_name: appName })).toBe(
              rows[0].n,
            )
            expect(valueOf(samples, 'warden_collector_success', { target: 'default', collector: 'sessions' })).toBe(0)
            expect(elapsedMs).toBeLessThan(900)
          } finally {
            await newcomer.end()
          }
        }
      } finally {
        await locker.query('ROLLBACK').catch(() => undefined)
        await locker.end()
      }
      // and once the lock is gone, the sessions gauges come back on the scrapes' own refreshes
      const recovered = await waitFor(
        async () =>
          valueOf((await api.scrape()).samples, 'warden_collector_success', { target: 'default', collector: 'sessions' }) === 1 ||
          undefined,
        'the sessions collector to recover',
        20_000,
        200,
      )
      expect(recovered).toBe(true)
    })
  })

  describe('warden serve', () => {
    let api: TestService
    beforeAll(async () => {
      // the background interval is long: what the scrape shows must come from its own refresh
      api = await startTestService(
        serviceConfig(t.url, {
          server: { collectInterval: '60s', freshFor: '500ms', collectTimeout: '2s' },
          extra: 'checks:\n  idleInTransaction: { warn: 1s, crit: 2s }\n',
        }),
      )
    })
    afterAll(async () => {
      await api?.close()
    })

    it("does not count Warden's own backends in warden_pg_connections (SQL counts the others)", async () => {
      const scraped = await waitFor(async () => {
        const { samples } = await api.scrape()
        return valueOf(samples, 'warden_collector_success', { target: 'default', collector: 'pg_connections' }) === 1 ? samples : undefined
      }, 'a pg_connections round')
      const own = scraped.filter((s) => s.name === 'warden_pg_connections' && s.labels.application_name === 'warden')
      expect(own).toEqual([])
      const idle = scraped.filter((s) => s.name === 'warden_pg_idle_in_transaction_max_seconds' && s.labels.application_name === 'warden')
      expect(idle).toEqual([])
    })

    it('an idle-in-transaction holder turns warden_check_status critical on the next scrapes (the background round is 60 s away), and ok when it lets go', async () => {
      const holder = new pg.Client({ connectionString: t.url, application_name: 'llm-holder' })
      await holder.connect()
      const status = async () =>
        valueOf((await api.scrape()).samples, 'warden_check_status', { target: 'default', check: 'idle-in-transaction' })
      try {
        await holder.query('BEGIN')
        await holder.query('SELECT 1')
        await waitFor(async () => {
          const { rows } = await t.exec(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'llm-holder' AND state = 'idle in transaction'`,
          )
          return rows[0].n === 1
        }, 'the server to see the holder idle in transaction')
        // crit at 2 s: the scrapes' own refreshes must get there while the background interval is 60 s
        const seen = await waitFor(
          async () => (await status()) === 2 || undefined,
          'warden_check_status{check="idle-in-transaction"} to be critical',
          20_000,
          300,
        )
        expect(seen).toBe(true)
      } finally {
        await holder.end()
      }
      const cleared = await waitFor(async () => (await status()) === 0 || undefined, 'warden_check_status to return to ok', 20_000, 300)
      expect(cleared).toBe(true)
    })
  })
})
