import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { createLogger, prettyLine } from '../src/server/logger.js'
import { createTestDatabase, useTestDatabase, type TestDatabase } from './helpers/db.js'
import { GROUPS, orphanCount, rowStates, seedConversationSessions } from './helpers/fixtures.js'
import { ADMIN_TOKEN, serviceConfig, startTestService, valueOf, type TestService } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

interface ErrorJson {
  error: { code: string; message: string }
}

const LOCK_KEY = 'warden:close:public.conversation_sessions'

async function expectError(response: Response, status: number, code: string, message?: RegExp): Promise<ErrorJson> {
  const body = (await response.json()) as ErrorJson
  expect(response.status, JSON.stringify(body)).toBe(status)
  expect(Object.keys(body)).toEqual(['error'])
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message'])
  expect(body.error.code).toBe(code)
  if (message) expect(body.error.message).toMatch(message)
  expect(JSON.stringify(body)).not.toMatch(/\n\s+at /)
  return body
}

describe('admin API (real HTTP, real PostgreSQL)', () => {
  let t: TestDatabase
  let api: TestService
  let clock = 1_000_000

  beforeAll(async () => {
    t = await createTestDatabase('server_api')
    await seedConversationSessions(t, { orphans: 30, live: 12, closed: 6 })
    await migrate(t.db, 'warden')
    api = await startTestService(serviceConfig(t.url, { server: { mutationsPerMinute: 1000 } }), { now: () => clock })
  })
  afterAll(async () => {
    await api?.close()
    await t?.drop()
  })

  it('answers /healthz, /readyz, echoes a request id, and 404s in the one error shape', async () => {
    const health = await api.get('/healthz', { 'x-request-id': 'probe-1' })
    expect(health.status).toBe(200)
    expect(health.headers.get('x-request-id')).toBe('probe-1')
    expect(await health.json()).toMatchObject({ status: 'ok' })
    const ready = await api.get('/readyz')
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'ready', database: { reachable: true } })
    await expectError(await api.get('/api/nope'), 404, 'not_found', /GET \/api\/nope/)
  })

  it('lists sessions by state and group, with paging, matching SQL', async () => {
    const active = await (await api.get('/api/sessions?limit=1000')).json()
    expect(active).toMatchObject({ state: 'active', count: 42, nextOffset: null })
    const orphaned = await (await api.get(`/api/sessions?state=orphaned&group=${GROUPS[0]}&limit=1000`)).json()
    expect(orphaned.count).toBe(10)
    expect(orphaned.sessions.every((s: { group: string; open: boolean }) => s.group === GROUPS[0] && s.open)).toBe(true)

    // orphans have distinct last-seen times: offset pages over a total order never skip or repeat a row
    const seen = new Set<string>()
    let offset: number | null = 0
    let pages = 0
    while (offset !== null) {
      const page = (await (await api.get(`/api/sessions?state=orphaned&limit=12&offset=${offset}`)).json()) as {
        sessions: Array<{ id: string }>
        nextOffset: number | null
      }
      for (const session of page.sessions) seen.add(session.id)
      offset = page.nextOffset
      pages += 1
    }
    expect(pages).toBe(3)
    expect(seen.size).toBe(30)
    expect((await (await api.get('/api/sessions?state=all&limit=1000')).json()).count).toBe(48)

    const stats = await (await api.get('/api/sessions/stats?byGroup=true&days=3')).json()
    expect(stats).toMatchObject({ days: 3, byGroup: true })
    expect(stats.rows.reduce((sum: number, row: { total: number }) => sum + row.total, 0)).toBe(48)
  })

  it('rejects bad query parameters with a 400 that names them', async () => {
    await expectError(await api.get('/api/sessions?limit=0'), 400, 'invalid_request', /^limit: expected an integer from 1 to 1000$/)
    await expectError(await api.get('/api/sessions?state=zombie'), 400, 'invalid_request', /^state: /)
    await expectError(await api.get('/api/sessions?grup=x'), 400, 'invalid_request', /grup: unknown query parameter/)
    await expectError(await api.get('/api/sessions/stats?days=x'), 400, 'invalid_request', /^days: /)
    await expectError(await api.get('/api/checks?check=nope'), 400, 'invalid_request', /unknown check "nope"/)
  })

  it('runs doctor checks and publishes their gauges', async () => {
    const report = await (await api.get('/api/checks?check=orphaned-sessions&check=connection-headroom')).json()
    expect(report.checks.map((c: { name: string; status: string }) => [c.name, c.status])).toEqual([
      ['orphaned-sessions', 'crit'],
      ['connection-headroom', 'ok'],
    ])
    const { samples } = await api.scrape()
    expect(valueOf(samples, 'warden_check_status', { check: 'orphaned-sessions' })).toBe(2)
    expect(valueOf(samples, 'warden_check_success', { check: 'connection-headroom' })).toBe(1)
  })

  it("shows the pool probe and doctor, with other backends' query texts only for the admin token", async () => {
    const holder = new pg.Client({ connectionString: t.url, application_name: 'api-holder' })
    await holder.connect()
    try {
      await holder.query('BEGIN')
      await holder.query("SELECT 'secret-literal' AS x")
      const open = (await (await api.get('/api/pool')).json()) as {
        server: { idleInTransaction: Array<{ applicationName: string; query: string | null }> }
        queryTextsShown: boolean
        pools: Array<{ poolName: string }>
      }
      expect(open.queryTextsShown).toBe(false)
      expect(open.server.idleInTransaction.find((b) => b.applicationName === 'api-holder')).toMatchObject({ query: null })
      expect(JSON.stringify(open)).not.toContain('secret-literal')
      expect(open.pools.map((p) => p.poolName)).toEqual(['warden:default', 'warden_collector:default'])
      const admin = await (await api.get('/api/pool', { authorization: `Bearer ${ADMIN_TOKEN}` })).json()
      expect(admin.queryTextsShown).toBe(true)
      expect(JSON.stringify(admin.server.idleInTransaction)).toContain('secret-literal')

      // doctor quotes the holder's last query in its message and evidence: the same rule applies
      const checks = await (await api.get('/api/checks?check=idle-in-transaction')).json()
      expect(checks.checks[0].message).toContain('api-holder')
      expect(checks.checks[0].message).toContain('last query: (shown with the admin token)')
      expect(JSON.stringify(checks)).not.toContain('secret-literal')
      const adminChecks = await (await api.get('/api/checks?check=idle-in-transaction', { authorization: `Bearer ${ADMIN_TOKEN}` })).json()
      expect(adminChecks.checks[0].message).toContain('secret-literal')
    } finally {
      await holder.end()
    }
  })

  it('guards mutations: 401 without a token, 403 with a wrong one, 200 with the right one', async () => {
    const missing = await api.post('/api/sweeps', undefined, null)
    await expectError(missing, 401, 'unauthorized')
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/)
    await expectError(await api.post('/api/sweeps', {}, 'x'.repeat(ADMIN_TOKEN.length)), 403, 'forbidden')
    await expectError(await api.post('/api/sweeps', {}, 'short'), 403, 'forbidden')
    const before = await rowStates(t)
    const dry = await api.post('/api/sweeps')
    expect(dry.status).toBe(200)
    expect(await dry.json()).toMatchObject({ dryRun: true, orphans: 30, closed: 0, byGroup: { [GROUPS[0]]: 10 } })
    expect(await rowStates(t)).toEqual(before)
  })

  it('validates mutation bodies with 400s that name the field, 415 for non-JSON bodies', async () => {
    await expectError(await api.post('/api/sweeps', { Apply: true }), 400, 'invalid_request', /^Apply: unknown field$/)
    await expectError(await api.post('/api/sweeps', { apply: 'yes' }), 400, 'invalid_request', /^apply: expected true or false$/)
    await expectError(await api.post('/api/sweeps', { batchSize: 0 }), 400, 'invalid_request', /^batchSize: expected an integer/)
    await expectError(await api.post('/api/sessions/close', {}), 400, 'invalid_request', /^body: a filter is required/)
    await expectError(
      await api.post('/api/sessions/close', { all: true, groups: ['x'] }),
      400,
      'invalid_request',
      /^all: .*cannot be combined/,
    )
    await expectError(
      await api.post('/api/sessions/close', { olderThan: '2 parsecs' }),
      400,
      'invalid_request',
      /^olderThan: expected a positive duration/,
    )
    await expectError(await api.post('/api/sessions/close', { groups: [] }), 400, 'invalid_request', /^groups: expected at least one group/)
    await expectError(
      await api.post('/api/sessions/close', { ids: ['not-a-uuid'], apply: true }),
      400,
      'invalid_request',
      /invalid input syntax for type uuid/,
    )
    const raw = (body: string, type: string) =>
      fetch(`${api.url}/api/sweeps`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': type }, body })
    await expectError(await raw('{"apply": tru', 'application/json'), 400, 'invalid_json')
    await expectError(await raw('apply=true', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type')
  })

  it('returns 409 while another sweep or close holds the table lock, counts it, and audits the refusal', async () => {
    const locker = new pg.Client({ connectionString: t.url })
    await locker.connect()
    try {
      await locker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [LOCK_KEY])
      const before = (await t.exec(`SELECT COALESCE(max(id), 0)::int AS id FROM warden.audit_log`)).rows[0].id
      await expectError(await api.post('/api/sweeps', { apply: true }), 409, 'sweep_running', /another sweep or close is running/)
      const { rows: audited } = await t.exec(
        `SELECT command, dry_run, status, rows_affected::int, error FROM warden.audit_log WHERE id > $1`,
        [before],
      )
      expect(audited).toEqual([
        {
          command: 'api sweep',
          dry_run: false,
          status: 'refused',
          rows_affected: 0,
          error: expect.stringMatching(/another sweep or close/),
        },
      ])
      const { samples } = await api.scrape()
      expect(valueOf(samples, 'warden_sweep_runs_total', { result: 'locked' })).toBe(1)
    } finally {
      await locker.end()
    }
  })

  it('applies a sweep and a close: audit rows with the API actor, closed_total by reason, gauges refreshed', async () => {
    const sweep = await api.post('/api/sweeps', { apply: true, batchSize: 7 })
    expect(sweep.status).toBe(200)
    const swept = await sweep.json()
    expect(swept).toMatchObject({ dryRun: false, orphans: 30, closed: 30, remaining: 0, batches: 5 })
    expect(await orphanCount(t)).toBe(0)

    const close = await api.post('/api/sessions/close', { groups: [GROUPS[1]], apply: true })
    const closed = await close.json()
    expect(close.status, JSON.stringify(closed)).toBe(200)
    expect(closed).toMatchObject({ dryRun: false, matched: 4, closed: 4, filter: { groups: [GROUPS[1]] } })

    const { rows } = await t.exec(
      `SELECT actor, command, reason, dry_run, rows_affected::int, status, filter FROM warden.audit_log WHERE NOT dry_run AND status <> 'refused' ORDER BY id`,
    )
    expect(rows).toEqual([
      {
        actor: 'api:127.0.0.1',
        command: 'api sweep',
        reason: 'orphan_sweep',
        dry_run: false,
        rows_affected: 30,
        status: 'ok',
        filter: { orphanAfterSeconds: 7200 },
      },
      {
        actor: 'api:127.0.0.1',
        command: 'api sessions close',
        reason: 'bulk_close',
        dry_run: false,
        rows_affected: 4,
        status: 'ok',
        filter: { groups: [GROUPS[1]] },
      },
    ])

    const metrics = await waitFor(async () => {
      const scraped = await api.scrape()
      const followed =
        valueOf(scraped.samples, 'warden_sessions_orphaned', { group: GROUPS[0] }) === 0 &&
        // a group whose sessions all closed reads 0 (it does not vanish)
        valueOf(scraped.samples, 'warden_sessions_active', { group: GROUPS[1] }) === 0
      return followed ? scraped : undefined
    }, 'session gauges to follow the sweep')
    expect(valueOf(metrics.samples, 'warden_sessions_closed_total', { reason: 'orphan_sweep' })).toBe(30)
    expect(valueOf(metrics.samples, 'warden_sessions_closed_total', { reason: 'bulk_close' })).toBe(4)
    expect(valueOf(metrics.samples, 'warden_sweep_runs_total', { result: 'ok' })).toBe(2) // the dry run and the apply
    expect(valueOf(metrics.samples, 'warden_sweep_duration_seconds_count')).toBe(2)
    expect(valueOf(metrics.samples, 'warden_sweep_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60)
  })

  it('rate-limits mutations per minute with 429 and Retry-After, counting only authenticated calls with a valid body', async () => {
    const limited = await startTestService(serviceConfig(t.url, { server: { mutationsPerMinute: 2 } }), { now: () => clock })
    try {
      for (let i = 0; i < 3; i += 1) expect((await limited.post('/api/sweeps', {}, 'wrong-token-wrong-token')).status).toBe(403)
      expect((await limited.post('/api/sweeps')).status).toBe(200)
      clock += 20_000
      // invalid bodies do not spend the operators' budget
      for (let i = 0; i < 3; i += 1) expect((await limited.post('/api/sweeps', { bogus: 1 })).status).toBe(400)
      expect((await limited.post('/api/sweeps')).status).toBe(200)
      const refused = await limited.post('/api/sweeps')
      await expectError(refused, 429, 'rate_limited', /at most 2 mutating request\(s\) per minute/)
      expect(refused.headers.get('retry-after')).toBe('40')
      clock += 40_000
      expect((await limited.post('/api/sweeps')).status).toBe(200)
    } finally {
      await limited.close()
    }
  })

  it('turns mutations off (403) when no admin token is configured', async () => {
    const open = await startTestService(serviceConfig(t.url, { token: null }))
    try {
      await expectError(await open.post('/api/sweeps', { apply: true }), 403, 'mutations_disabled', /no admin token is configured/)
      await expectError(await open.post('/api/sessions/close', { all: true }, null), 403, 'mutations_disabled')
      expect((await open.get('/api/sessions')).status).toBe(200)
    } finally {
      await open.close()
    }
  })
})

describe('service logger', () => {
  it('redacts the admin token, authorization headers and database passwords wherever they are logged', () => {
    const lines: string[] = []
    const logger = createLogger({ format: 'json', destination: { write: (line: string) => lines.push(line) } })
    logger.info(
      {
        config: { server: { adminToken: ADMIN_TOKEN }, database: { url: 'postgres://warden:hunter2@db:5432/chat' } },
        req: { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } },
      },
      'careless',
    )
    expect(lines.join('')).not.toContain(ADMIN_TOKEN)
    expect(lines.join('')).not.toContain('hunter2')
    expect(JSON.parse(lines[0]!).config.database.url).toBe('postgres://warden:*****@db:5432/chat')
    expect(prettyLine(lines[0]!, false)).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}careless {2}config=/)
  })
})

describe('graceful shutdown (real HTTP, real PostgreSQL)', () => {
  const t = useTestDatabase('server_shutdown', async (t) => {
    await seedConversationSessions(t, { orphans: 3000, live: 5 })
    await migrate(t.db, 'warden')
  })

  it('finishes the request in flight and its sweep batch, then stops: a partial, audited sweep', async () => {
    const api = await startTestService(serviceConfig(t.url))
    const response = api.post('/api/sweeps', { apply: true, batchSize: 1 })
    await waitFor(
      async () => Number((await t.exec(`SELECT coalesce(max(rows_affected), 0)::int AS n FROM warden.audit_log`)).rows[0].n) > 20,
      'the sweep to be under way',
    )
    const closing = api.service.close(5_000)
    const answered = await response
    expect(answered.status).toBe(200)
    const report = await answered.json()
    expect(report).toMatchObject({ dryRun: false, stoppedEarly: 'signal' })
    expect(report.closed).toBeGreaterThan(20)
    expect(report.closed).toBeLessThan(3000)
    expect(await closing).toEqual({ forced: false })
    expect(api.service.fleet.targets[0]!.db.pool.totalCount).toBe(0)
    await expect(fetch(`${api.url}/healthz`)).rejects.toThrow()
    const states = await rowStates(t)
    expect(states).toEqual({ closed: report.closed, open: 3005 - report.closed })
    const { rows } = await t.exec(`SELECT status, rows_affected::int FROM warden.audit_log WHERE NOT dry_run`)
    expect(rows).toEqual([{ status: 'partial', rows_affected: report.closed }])
  })
})
