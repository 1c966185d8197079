import { connect } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { CONVERSATION_SHAPE, dailyStatsExpected, GROUPS, seedConversationSessions, seedDailyStats } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'
import { serviceConfig, startTestService, type TestService } from './helpers/server.js'

const countOpen = async (t: TestDatabase, where = 'true') =>
  (await t.exec(`SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active AND ${where}`)).rows[0].n as number

interface CloseJson {
  dryRun: boolean
  matched: number
  closed: number
  remaining: number
  filter: Record<string, unknown>
}

/**
 * POST /api/sessions/close with each filter, applied and as a dry run, against a running service
 * on a database of each test's own: the counts come from SQL, the invariants hold after each call.
 */
describe('POST /api/sessions/close (real HTTP, real PostgreSQL)', () => {
  let t: TestDatabase
  let api: TestService
  beforeEach(async () => {
    t = await createTestDatabase('api_close')
    await seedConversationSessions(t, { orphans: 30, live: 12, closed: 6 })
    await migrate(t.db, 'warden')
    api = await startTestService(serviceConfig(t.url))
  })
  afterEach(async () => {
    await api?.close()
    await t?.drop()
  })
  const close = async (body: unknown) => {
    const response = await api.post('/api/sessions/close', body)
    const json = (await response.json()) as CloseJson
    expect(response.status, JSON.stringify(json)).toBe(200)
    return json
  }
  const audit = async () =>
    (await t.exec(`SELECT command, reason, dry_run, rows_matched::int, rows_affected::int, status FROM warden.audit_log ORDER BY id`)).rows

  it('{ids, apply}: closes exactly those open sessions; a closed id among them is left alone', async () => {
    const { rows: open } = await t.exec(
      `SELECT session_id::text AS id FROM conversation_sessions WHERE is_active ORDER BY session_id LIMIT 3`,
    )
    const { rows: done } = await t.exec(`SELECT session_id::text AS id FROM conversation_sessions WHERE NOT is_active LIMIT 1`)
    const ids = [...open.map((r) => r.id as string), done[0].id as string]
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const json = await close({ ids, apply: true })
    expect(json).toMatchObject({ dryRun: false, matched: 3, closed: 3, remaining: 0 })
    await expectInvariants(t, before, { closed: 3 })
    const { rows } = await t.exec(
      `SELECT session_id::text AS id FROM conversation_sessions WHERE session_id = ANY($1::uuid[]) AND is_active`,
      [ids],
    )
    expect(rows).toEqual([])
    expect(await audit()).toEqual([
      { command: 'api sessions close', reason: 'bulk_close', dry_run: false, rows_matched: 3, rows_affected: 3, status: 'ok' },
    ])
  })

  it('{olderThan, apply}: closes the open sessions started before that age and no other', async () => {
    const older = `session_start < now() - interval '4 hours 30 minutes'`
    const expected = await countOpen(t, older)
    expect(expected).toBe(30) // the seed's orphans started 5 h ago, its live sessions 4 h ago
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    expect(await close({ olderThan: '4h30m', apply: true })).toMatchObject({ dryRun: false, matched: expected, closed: expected })
    await expectInvariants(t, before, { closed: expected })
    expect(await countOpen(t, older)).toBe(0)
    expect(await countOpen(t)).toBe(12)
  })

  it('{all, apply}: closes every open session', async () => {
    const open = await countOpen(t)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    expect(await close({ all: true, apply: true })).toMatchObject({ dryRun: false, matched: open, closed: open, remaining: 0 })
    await expectInvariants(t, before, { closed: open })
    expect(await countOpen(t)).toBe(0)
  })

  it('without apply it is a dry run: reports what would close, changes nothing, and is audited as a dry run', async () => {
    const open = await countOpen(t, `agent_role = '${GROUPS[2]}'`)
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    const json = await close({ groups: [GROUPS[2]] })
    expect(json).toMatchObject({ dryRun: true, matched: open, closed: 0 })
    await expectInvariants(t, before, { closed: 0 })
    expect(await countOpen(t, `agent_role = '${GROUPS[2]}'`)).toBe(open)
    expect(await audit()).toEqual([
      { command: 'api sessions close', reason: 'bulk_close', dry_run: true, rows_matched: open, rows_affected: 0, status: 'ok' },
    ])
  })

  it('refuses a body with no filter, or all with another filter (400 naming why), and changes nothing', async () => {
    const before = await snapshotTable(t, CONVERSATION_SHAPE)
    for (const body of [{ apply: true }, { all: true, groups: [GROUPS[0]], apply: true }, { ids: [], apply: true }]) {
      const response = await api.post('/api/sessions/close', body)
      const json = (await response.json()) as { error: { code: string; message: string } }
      expect(response.status, JSON.stringify(json)).toBe(400)
      expect(json.error.code).toBe('invalid_request')
    }
    await expectInvariants(t, before, { closed: 0 })
  })
})

describe('GET /api/sessions/stats (real HTTP, real PostgreSQL)', () => {
  it('the per-day figures of a seed whose every figure is known, per day and per day and group', async () => {
    const t = await createTestDatabase('api_stats')
    const day = await seedDailyStats(t)
    const api = await startTestService(serviceConfig(t.url)).catch(async (error: unknown) => {
      await t.drop()
      throw error
    })
    try {
      const expected = dailyStatsExpected(day)
      const all = await api.get('/api/sessions/stats')
      expect(all.status).toBe(200)
      expect(await all.json()).toEqual({
        target: 'default',
        table: 'public.conversation_sessions',
        days: 7,
        byGroup: false,
        rows: expected.all,
      })
      const byGroup = await api.get('/api/sessions/stats?days=3&byGroup=true')
      expect(await byGroup.json()).toEqual({
        target: 'default',
        table: 'public.conversation_sessions',
        days: 3,
        byGroup: true,
        rows: expected.byGroup3Days,
      })
    } finally {
      await api.close()
      await t.drop()
    }
  })
})

describe('GET /readyz while shutting down (real HTTP)', () => {
  it('a probe that reaches the service after close() began is answered 503 shutting_down', async () => {
    const t = await createTestDatabase('api_readyz_shutdown')
    await seedConversationSessions(t, { orphans: 1, live: 1 })
    const api = await startTestService(serviceConfig(t.url))
    try {
      expect((await api.get('/readyz')).status).toBe(200)
      const { port } = new URL(api.url)
      const socket = connect(Number(port), '127.0.0.1')
      let received = ''
      const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()))
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
      // a probe whose request has begun: close() waits for it instead of dropping an idle connection
      socket.write('GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
      await waitForServerRead()
      const closing = api.close()
      expect(api.service.shutdownSignal.aborted).toBe(true)
      socket.write('Connection: close\r\n\r\n')
      await ended
      await closing
      expect(received).toMatch(/^HTTP\/1\.1 503 /)
      const body = JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string } }
      expect(body).toEqual({ error: { code: 'shutting_down', message: 'the service is shutting down' } })
    } finally {
      await api.close()
      await t.drop()
    }
  })
})

/**
 * The service runs in this process: a few turns of the event loop let it read the bytes written
 * on loopback. Should it not have, close() drops the idle connection and the test fails (no 503),
 * it cannot pass wrongly.
 */
async function waitForServerRead(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setTimeout(resolve, 20))
}
