import pg from 'pg'
import { Gauge } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import type { CollectorFactory } from '../src/metrics/collector.js'
import { sessionsCollector } from '../src/metrics/collectors/index.js'
import { keptLabels, MAX_LABEL_VALUES, OTHER_LABEL } from '../src/metrics/labels.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { exampleSchema, seedConversationSessions } from './helpers/fixtures.js'
import { byLabel, serviceConfig, startTestService, valueOf, type TestService } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

/** Every label a Warden metric may carry: low-cardinality by construction, never a session or user id. */
const ALLOWED_LABELS = new Set([
  'target',
  'table',
  'group',
  'reason',
  'result',
  'check',
  'state',
  'application_name',
  'collector',
  'db_client_connection_pool_name',
  'db_client_connection_state',
  'le',
])

const SPEC_TYPES: Record<string, string> = {
  warden_sessions_active: 'gauge',
  warden_sessions_orphaned: 'gauge',
  warden_sessions_oldest_active_age_seconds: 'gauge',
  warden_sessions_closed_total: 'counter',
  warden_sweep_runs_total: 'counter',
  warden_sweep_duration_seconds: 'histogram',
  warden_sweep_last_success_timestamp_seconds: 'gauge',
  warden_check_status: 'gauge',
  warden_check_success: 'gauge',
  warden_check_duration_seconds: 'gauge',
  warden_pg_up: 'gauge',
  warden_pg_connections: 'gauge',
  warden_pg_connections_max: 'gauge',
  warden_pg_idle_in_transaction_max_seconds: 'gauge',
  warden_collect_last_success_timestamp_seconds: 'gauge',
  warden_collector_success: 'gauge',
  db_client_connection_count: 'gauge',
  db_client_connection_max: 'gauge',
  db_client_connection_wait_time_seconds: 'histogram',
}

const sqlByGroup = async (t: TestDatabase, where: string): Promise<Record<string, number>> =>
  Object.fromEntries(
    (
      await t.exec(`SELECT COALESCE(agent_role, '(none)') AS g, count(*)::int AS n FROM conversation_sessions WHERE ${where} GROUP BY 1`)
    ).rows.map((r) => [r.g, r.n]),
  )

describe('GET /metrics (real PostgreSQL)', () => {
  let t: TestDatabase
  let api: TestService

  beforeAll(async () => {
    t = await createTestDatabase('metrics')
    await seedConversationSessions(t, { orphans: 31, live: 8, closed: 5 })
    // sessions without a group are counted under "(none)"
    await t.exec(`INSERT INTO conversation_sessions (session_id, user_id, is_active, session_start, last_activity_at)
                  SELECT gen_random_uuid(), 'u', true, now() - interval '30 minutes', now() FROM generate_series(1, 3)`)
    api = await startTestService(serviceConfig(t.url, { server: { collectInterval: '500ms', collectTimeout: '2s' } }))
  })
  afterAll(async () => {
    await api?.close()
    await t?.drop()
  })

  it("publishes the session gauges by group with the values SQL gives, and the spec's names, types and labels", async () => {
    const { samples, types, help } = await waitFor(async () => {
      const scraped = await api.scrape()
      return valueOf(scraped.samples, 'warden_collector_success', { collector: 'sessions' }) === 1 ? scraped : undefined
    }, 'the first collection')
    expect(byLabel(samples, 'warden_sessions_active', 'group')).toEqual(await sqlByGroup(t, 'is_active'))
    const orphans = await sqlByGroup(t, `is_active AND COALESCE(last_activity_at, session_start) < now() - interval '2 hours'`)
    expect(byLabel(samples, 'warden_sessions_orphaned', 'group')).toEqual({ ...orphans, '(none)': 0 })
    const { rows } = await t.exec(
      `SELECT COALESCE(agent_role, '(none)') AS g, EXTRACT(EPOCH FROM now() - min(session_start))::float8 AS age FROM conversation_sessions WHERE is_active GROUP BY 1`,
    )
    for (const row of rows) {
      const published = valueOf(samples, 'warden_sessions_oldest_active_age_seconds', { group: row.g })!
      expect(Math.abs(published - row.age), row.g).toBeLessThan(30)
    }

    for (const [name, type] of Object.entries(SPEC_TYPES)) {
      expect(types.get(name), name).toBe(type)
      expect(help.get(name)?.length ?? 0, `HELP of ${name}`).toBeGreaterThan(10)
    }
    for (const sample of samples.filter((s) => /^(warden|db_client)_/.test(s.name))) {
      for (const label of Object.keys(sample.labels)) expect(ALLOWED_LABELS.has(label), `${sample.name} label ${label}`).toBe(true)
    }
    expect(valueOf(samples, 'warden_pg_up')).toBe(1)
    expect(valueOf(samples, 'warden_pg_connections_max')).toBe(Number((await t.exec('SHOW max_connections')).rows[0].max_connections))
    // process metrics, minus the *_total gauges promtool rejects
    expect(types.get('process_cpu_seconds_total')).toBe('counter')
    expect(types.get('nodejs_active_handles')).toBe('gauge')
    expect(types.has('nodejs_active_handles_total')).toBe(false)
    // the sweep histogram reaches minutes
    const bounds = samples.filter((s) => s.name === 'warden_sweep_duration_seconds_bucket').map((s) => Number(s.labels.le))
    expect(Math.max(...bounds.filter(Number.isFinite))).toBeGreaterThanOrEqual(600)
  })

  it('shows who sits idle in a transaction, by application_name, for how long', async () => {
    const holder = new pg.Client({ connectionString: t.url, application_name: 'metrics-holder' })
    await holder.connect()
    try {
      await holder.query('BEGIN')
      await holder.query('SELECT 1')
      const { samples } = await waitFor(async () => {
        const scraped = await api.scrape()
        return (valueOf(scraped.samples, 'warden_pg_idle_in_transaction_max_seconds', { application_name: 'metrics-holder' }) ?? 0) >= 1
          ? scraped
          : undefined
      }, 'the holder to show up idle in transaction')
      expect(valueOf(samples, 'warden_pg_connections', { state: 'idle in transaction', application_name: 'metrics-holder' })).toBe(1)
    } finally {
      await holder.end()
    }
    await waitFor(
      async () =>
        valueOf((await api.scrape()).samples, 'warden_pg_idle_in_transaction_max_seconds', { application_name: 'metrics-holder' }) ===
        undefined,
      'the holder to disappear',
    )
  })

  it('never waits on a stalled table: scrapes stay fast, the stuck collector reports failure, the others keep going', async () => {
    const locker = new pg.Client({ connectionString: t.url })
    await locker.connect()
    const durations: number[] = []
    try {
      const before = (await api.scrape()).samples
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE conversation_sessions IN ACCESS EXCLUSIVE MODE')
      const stalled = await waitFor(async () => {
        const started = performance.now()
        const scraped = await api.scrape()
        durations.push(performance.now() - started)
        return valueOf(scraped.samples, 'warden_collector_success', { collector: 'sessions' }) === 0 ? scraped.samples : undefined
      }, 'the sessions collector to hit its deadline')
      // the collection waited 2 s on the lock; scrapes answered from memory meanwhile
      expect(durations.length).toBeGreaterThan(3)
      expect(Math.max(...durations)).toBeLessThan(1000)
      expect(valueOf(stalled, 'warden_pg_up')).toBe(1)
      expect(valueOf(stalled, 'warden_collector_success', { collector: 'pg_connections' })).toBe(1)
      expect(byLabel(stalled, 'warden_sessions_active', 'group')).toEqual(byLabel(before, 'warden_sessions_active', 'group'))
      expect(api.logs.some((entry) => entry.collector === 'sessions' && /no answer within 2000 ms/.test(String(entry.error)))).toBe(true)
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined)
      await locker.end()
    }
    await waitFor(
      async () => valueOf((await api.scrape()).samples, 'warden_collector_success', { collector: 'sessions' }) === 1,
      'the sessions collector to recover',
    )
  })

  it('isolates collectors: one that throws or hangs does not stop the others', async () => {
    const broken: CollectorFactory = () => ({ name: 'broken', collect: () => Promise.reject(new Error('boom')), update: () => undefined })
    const hanging: CollectorFactory = () => ({
      name: 'hanging',
      timeoutSeconds: 0.3,
      collect: () => new Promise(() => undefined),
      update: () => undefined,
    })
    const inProcess: CollectorFactory = ({ registry }) => {
      const gauge = new Gauge({ name: 'warden_test_in_process', help: 'test gauge', registers: [registry] })
      return { name: 'in_process', needsDatabase: false, collect: async () => 42, update: (value: number) => gauge.set(value) }
    }
    const other = await startTestService(serviceConfig(t.url, { server: { collectInterval: '300ms' } }), {
      collectors: [broken, sessionsCollector, hanging, inProcess],
    })
    try {
      const samples = await waitFor(async () => {
        const scraped = (await other.scrape()).samples
        return valueOf(scraped, 'warden_collector_success', { collector: 'hanging' }) === 0 ? scraped : undefined
      }, 'the hanging collector to time out')
      expect(valueOf(samples, 'warden_collector_success', { collector: 'broken' })).toBe(0)
      expect(valueOf(samples, 'warden_collector_success', { collector: 'sessions' })).toBe(1)
      expect(valueOf(samples, 'warden_collector_success', { collector: 'in_process' })).toBe(1)
      expect(valueOf(samples, 'warden_test_in_process')).toBe(42)
      expect(valueOf(samples, 'warden_collect_last_success_timestamp_seconds', { collector: 'broken' })).toBe(0)
      expect(byLabel(samples, 'warden_sessions_active', 'group')).toEqual(await sqlByGroup(t, 'is_active'))
      // a failure streak is logged once at warn, not once per round
      await new Promise((resolve) => setTimeout(resolve, 1000))
      expect(other.logs.filter((entry) => entry.collector === 'broken' && entry.level === 'warn')).toHaveLength(1)
    } finally {
      await other.close()
    }
  })

  it('folds label values beyond the cap into "(other)"', () => {
    const counts = Array.from({ length: 60 }, (_, i) => ({ label: `g${i}`, count: i }))
    const label = keptLabels(counts)
    const kept = new Set(counts.map((c) => label(c.label)))
    expect(kept.size).toBe(MAX_LABEL_VALUES)
    expect(kept.has(OTHER_LABEL)).toBe(true)
    expect(label('g59')).toBe('g59')
    expect(label('g0')).toBe(OTHER_LABEL)
  })
})

describe('database down while serving (its own PostgreSQL, stopped and started)', () => {
  let server: EmbeddedPostgres | undefined
  let api: TestService | undefined

  const seed = async (url: string, active: number) => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query(exampleSchema('conversation_sessions'))
      await client.query(
        `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
         SELECT gen_random_uuid(), 'u', 'support-agent', true, now() - interval '1 hour', now() FROM generate_series(1, $1::int)`,
        [active],
      )
    } finally {
      await client.end()
    }
  }

  afterAll(async () => {
    await api?.close()
    await server?.stop()
  })

  it('keeps answering /metrics with warden_pg_up 0 and the last values, /readyz 503, and recovers after a restart', async () => {
    server = await startEmbeddedPostgres()
    const { port, url } = server
    await seed(url, 7)
    api = await startTestService(serviceConfig(url, { server: { collectInterval: '300ms', collectTimeout: '1s' } }))
    const service = api
    await waitFor(
      async () => valueOf((await service.scrape()).samples, 'warden_sessions_active', { group: 'support-agent' }) === 7,
      'the first collection',
    )
    const lastGood = valueOf((await service.scrape()).samples, 'warden_collect_last_success_timestamp_seconds', { collector: 'sessions' })!

    await server.stop()
    const down = await waitFor(async () => {
      const scraped = (await service.scrape()).samples
      return valueOf(scraped, 'warden_pg_up') === 0 && valueOf(scraped, 'warden_collector_success', { collector: 'sessions' }) === 0
        ? scraped
        : undefined
    }, 'warden_pg_up 0')
    expect(valueOf(down, 'warden_sessions_active', { group: 'support-agent' })).toBe(7)
    expect(valueOf(down, 'warden_collect_last_success_timestamp_seconds', { collector: 'sessions' })).toBeLessThanOrEqual(lastGood + 1)
    const ready = await service.get('/readyz')
    expect(ready.status).toBe(503)
    expect(await ready.json()).toMatchObject({ error: { code: 'database_unavailable' } })
    expect((await service.get('/healthz')).status).toBe(200)
    expect((await service.get('/api/sessions')).status).toBe(503)
    expect(service.logs.filter((entry) => entry.event === 'pg_down')).toHaveLength(1)

    server = await startEmbeddedPostgres({ port })
    await seed(server.url, 9)
    await waitFor(async () => {
      const scraped = (await service.scrape()).samples
      return valueOf(scraped, 'warden_pg_up') === 1 && valueOf(scraped, 'warden_sessions_active', { group: 'support-agent' }) === 9
    }, 'warden_pg_up 1 after the restart')
    expect((await service.get('/readyz')).status).toBe(200)
    expect(service.logs.some((entry) => entry.event === 'pg_up')).toBe(true)
  })
})
