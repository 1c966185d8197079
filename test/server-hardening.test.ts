import pg from 'pg'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { expectInvariants, snapshotTable } from './helpers/invariants.js'
import { ADMIN_TOKEN, serviceConfig, startTestService, valueOf, type TestService } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

interface ErrorJson {
  error: { code: string; message: string }
}

async function expectError(response: Response, status: number, code: string, message?: string | RegExp): Promise<void> {
  const body = (await response.json()) as ErrorJson
  expect(response.status, JSON.stringify(body)).toBe(status)
  expect(body.error.code, JSON.stringify(body)).toBe(code)
  if (message) expect(body.error.message).toMatch(message)
}

/** A raw JSON body: JSON.stringify could not even write the numbers these tests send. */
const rawPost = (api: TestService, path: string, body: string) =>
  fetch(`${api.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body,
  })

describe('admin API: ids, text and tokens a hostile client sends (real HTTP, real PostgreSQL)', () => {
  let t: TestDatabase
  let api: TestService
  let clock = 5_000_000
  const shape = { table: 'big_sessions', active: 'active', endedAt: ['ended'], startedAt: 'started', lastSeenAt: 'seen' }

  beforeAll(async () => {
    t = await createTestDatabase('api_hardening')
    await migrate(t.db, 'warden')
    await t.exec(
      `CREATE TABLE big_sessions (id bigint PRIMARY KEY, active boolean NOT NULL, started timestamptz NOT NULL, seen timestamptz, ended timestamptz, grp text)`,
    )
    // two ids JSON numbers cannot tell apart: 2^53 and 2^53 + 1
    await t.exec(
      `INSERT INTO big_sessions VALUES (9007199254740992, true, now() - interval '1 hour', now(), NULL, 'a'), (9007199254740993, true, now() - interval '1 hour', now(), NULL, 'a')`,
    )
    const extra = `sessions:\n  table: public.big_sessions\n  columns: { id: id, active: active, startedAt: started, lastSeenAt: seen, endedAt: ended, group: grp }\n`
    api = await startTestService(serviceConfig(t.url, { extra, server: { authFailuresPerMinute: 5 } }), { now: () => clock })
  })
  afterAll(async () => {
    await api?.close()
    await t?.drop()
  })

  it('a bigint id sent as a JSON number beyond 2^53 is refused (400, send strings); as a string it closes exactly that session', async () => {
    let before = await snapshotTable(t, shape)
    await expectError(
      await rawPost(api, '/api/sessions/close', '{"ids": [9007199254740993], "apply": true}'),
      400,
      'invalid_request',
      /ids\.0: 9007199254740992 is beyond 2\^53 - 1.*send ids as strings/,
    )
    await expectInvariants(t, before, { closed: 0 })

    before = await snapshotTable(t, shape)
    const closed = await rawPost(api, '/api/sessions/close', '{"ids": ["9007199254740993"], "apply": true}')
    expect(closed.status).toBe(200)
    expect(await closed.json()).toMatchObject({ matched: 1, closed: 1, filter: { ids: ['9007199254740993'] } })
    await expectInvariants(t, before, { closed: 1 })
    const { rows } = await t.exec(`SELECT id::text, active FROM big_sessions ORDER BY id`)
    expect(rows).toEqual([
      { id: '9007199254740992', active: true },
      { id: '9007199254740993', active: false },
    ])
    const audit = await t.exec(`SELECT filter FROM warden.audit_log WHERE NOT dry_run AND status = 'ok'`)
    expect(audit.rows).toEqual([{ filter: { ids: ['9007199254740993'] } }])
  })

  it('NUL characters and lone surrogates in a query parameter or a body are a 400 naming where, before any statement', async () => {
    const before = await snapshotTable(t, shape)
    await expectError(await api.get('/api/sessions?group=a%00b'), 400, 'invalid_request', /^group: contains a NUL character/)
    await expectError(
      await rawPost(api, '/api/sessions/close', '{"groups": ["x\\u0000"], "apply": true}'),
      400,
      'invalid_request',
      /groups\[0\]/,
    )
    await expectError(
      await rawPost(api, '/api/sessions/close', '{"ids": ["\\ud800"], "apply": true}'),
      400,
      'invalid_request',
      /ids\[0\]: .*unpaired UTF-16 surrogate/,
    )
    await expectError(await rawPost(api, '/api/sweeps', '{"\\u0000": true}'), 400, 'invalid_request')
    await expectInvariants(t, before, { closed: 0 })
  })

  it('wrong tokens are throttled per client: after 5 failures in a minute even the right one waits (429), then it passes', async () => {
    for (let i = 0; i < 5; i += 1) expect((await api.post('/api/sweeps', {}, `wrong-${i}-token-0123456789`)).status).toBe(403)
    const limited = await api.post('/api/sweeps', {})
    await expectError(limited, 429, 'too_many_failures', /too many failed authentication attempts/)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    clock += 61_000
    expect((await api.post('/api/sweeps', {})).status).toBe(200)
  })
})

describe('admin API while the table changes under it', () => {
  let t: TestDatabase
  let api: TestService

  beforeEach(async () => {
    t = await createTestDatabase('api_drift')
    await seedConversationSessions(t, { orphans: 6, live: 3 })
    await migrate(t.db, 'warden')
    api = await startTestService(serviceConfig(t.url))
  })
  afterEach(async () => {
    await api?.close()
    await t?.drop()
  })

  it('a column renamed under serve gives a 503 naming the mapping key and the column; renamed back, it serves again', async () => {
    expect((await api.get('/api/sessions')).status).toBe(200)
    await t.exec('ALTER TABLE conversation_sessions RENAME COLUMN last_activity_at TO last_seen')
    await expectError(
      await api.get('/api/sessions'),
      503,
      'misconfigured',
      /sessions\.columns\.lastSeenAt = "last_activity_at".*has no column last_activity_at/,
    )
    await expectError(await api.post('/api/sweeps', { apply: true }), 503, 'misconfigured', /last_activity_at/)
    await t.exec('ALTER TABLE conversation_sessions RENAME COLUMN last_seen TO last_activity_at')
    expect((await api.get('/api/sessions')).status).toBe(200)
  })

  it('an applied sweep that meets a table lock answers 409 table_locked with the holder, and audits the refusal', async () => {
    expect((await api.get('/api/sessions')).status).toBe(200) // the mapping is resolved and cached
    const locker = new pg.Client({ connectionString: t.url, application_name: 'vacuum-full-job' })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
      const before = (await t.exec(`SELECT COALESCE(max(id), 0)::int AS id FROM warden.audit_log`)).rows[0].id
      await expectError(
        await api.post('/api/sweeps', { apply: true }),
        409,
        'table_locked',
        /is locked by pid \d+ \(vacuum-full-job, AccessExclusiveLock/,
      )
      await locker.query('ROLLBACK')
      const { rows } = await t.exec(`SELECT status, rows_affected::int, error FROM warden.audit_log WHERE id > $1`, [before])
      expect(rows).toEqual([{ status: 'refused', rows_affected: 0, error: expect.stringContaining('vacuum-full-job') }])
    } finally {
      await locker.end()
    }
  })
})

describe('metrics: a real group named like an overflow bucket', () => {
  let t: TestDatabase
  let api: TestService

  beforeAll(async () => {
    t = await createTestDatabase('api_other_group')
    await seedConversationSessions(t, { orphans: 0, live: 0 })
    // 60 groups with 1..60 open sessions each, and a real group "(other)" with 100: 49 groups keep a
    // label of their own (the 50th is the overflow), so the 12 smallest (1 + … + 12 = 78 sessions) fold.
    await t.exec(
      `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
       SELECT gen_random_uuid(), 'u', 'g' || g, true, now() - interval '1 hour', now()
         FROM generate_series(1, 60) g, generate_series(1, 60) n WHERE n <= g
       UNION ALL
       SELECT gen_random_uuid(), 'u', '(other)', true, now() - interval '1 hour', now() FROM generate_series(1, 100)`,
    )
    await migrate(t.db, 'warden')
    api = await startTestService(serviceConfig(t.url))
  })
  afterAll(async () => {
    await api?.close()
    await t?.drop()
  })

  it('keeps its own series ("(other)" quoted) and never merges with the overflow bucket', async () => {
    const samples = await waitFor(async () => {
      const scraped = (await api.scrape()).samples
      return valueOf(scraped, 'warden_sessions_active', { group: 'g60' }) !== undefined ? scraped : undefined
    }, 'the first collection')
    expect(valueOf(samples, 'warden_sessions_active', { group: '"(other)"' })).toBe(100)
    expect(valueOf(samples, 'warden_sessions_active', { group: '(other)' })).toBe(78)
    expect(valueOf(samples, 'warden_sessions_active', { group: 'g13' })).toBe(13)
    expect(valueOf(samples, 'warden_sessions_active', { group: 'g12' })).toBeUndefined()
    const listed = await (await api.get('/api/sessions?group=%22(other)%22&limit=1000')).json()
    expect(listed.count).toBe(100)
  })
})
