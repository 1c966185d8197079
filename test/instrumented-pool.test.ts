import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  describePool,
  getPoolInstrumentation,
  instrumentPool,
  llmCall,
  POOL_METRIC_NAMES,
  POOL_NAME_LABEL,
  POOL_STATE_LABEL,
  POOL_TIME_BUCKETS,
} from '../src/pool/instrumented-pool.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { busyWait, collectingLogger, poolFixture } from './helpers/pool.js'
import { checkExposition, family, histogram, seriesValue } from './helpers/registry.js'

const THIS_FILE = 'instrumented-pool.test.ts'
/** the labels of one pool's series, and of one state of db_client_connection_count */
const of = (poolName: string) => ({ [POOL_NAME_LABEL]: poolName })
const inState = (poolName: string, state: 'idle' | 'used') => ({ [POOL_NAME_LABEL]: poolName, [POOL_STATE_LABEL]: state })

describe('instrumented pg.Pool (real PostgreSQL)', () => {
  let t: TestDatabase
  const { makePool, endAll } = poolFixture(() => t)

  beforeAll(async () => {
    t = await createTestDatabase('pool')
  })
  afterAll(async () => {
    await t.drop()
  })
  afterEach(endAll)

  describe('metrics', () => {
    it('publishes the seven metrics with their exact names, types and OpenTelemetry label names, and buckets from 0.5 ms to minutes', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 3 })
      await pool.query('SELECT 1')
      const client = await pool.connect()
      client.release()

      const expected: Array<[string, string, string[]]> = [
        ['db_client_connection_count', 'gauge', ['db_client_connection_pool_name', 'db_client_connection_state']],
        ['db_client_connection_max', 'gauge', ['db_client_connection_pool_name']],
        ['db_client_connection_pending_requests', 'gauge', ['db_client_connection_pool_name']],
        ['db_client_connection_wait_time_seconds', 'histogram', ['db_client_connection_pool_name', 'le']],
        ['db_client_connection_use_time_seconds', 'histogram', ['db_client_connection_pool_name', 'le']],
        ['db_client_connection_timeouts_total', 'counter', ['db_client_connection_pool_name']],
      ]
      for (const [name, type, labels] of expected) {
        const metric = await family(registry, name)
        expect(metric.type, name).toBe(type)
        expect(metric.values.length, `${name} has series`).toBeGreaterThan(0)
        for (const value of metric.values) {
          const keys = Object.keys(value.labels).sort()
          // histogram _sum/_count carry the pool name only
          expect(
            keys.filter((key) => key !== 'le'),
            name,
          ).toEqual(labels.filter((key) => key !== 'le'))
          expect(value.labels.db_client_connection_pool_name).toBe('app')
        }
      }
      // the LLM-call counter exists (HELP/TYPE) before its first increment, with no series yet
      const held = await family(registry, 'warden_db_connection_held_during_llm_call_total')
      expect(held.type).toBe('counter')
      expect(held.values).toEqual([])
      expect(Object.values(POOL_METRIC_NAMES).sort()).toEqual(
        [...expected.map(([name]) => name), 'warden_db_connection_held_during_llm_call_total'].sort(),
      )

      const states = (await family(registry, 'db_client_connection_count')).values.map((v) => v.labels.db_client_connection_state).sort()
      expect(states).toEqual(['idle', 'used'])
      expect(await seriesValue(registry, 'db_client_connection_max', of('app'))).toBe(3)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('app', 'idle'))).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('app', 'used'))).toBe(0)

      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', of('app'))
      const bounds = [...wait.buckets.keys()].filter(Number.isFinite)
      expect(bounds).toEqual([...POOL_TIME_BUCKETS])
      for (const otel of [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92])
        expect(bounds).toContain(otel)
      for (const fast of [0.0005, 0.001, 0.0025, 0.005]) expect(bounds).toContain(fast)
      expect(Math.max(...bounds)).toBeGreaterThan(81.92)
      expect(wait.count).toBe(2) // pool.query and connect both acquire
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))).count).toBe(2)
    })

    it('wait time grows when the pool is saturated, the pending gauge shows the waiter, use time is recorded on release', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 1 })
      ;(await pool.connect()).release() // a warm, idle connection
      const holder = await pool.connect()
      const useBefore = await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))

      let waitedMs = 0
      const startedWaiting = performance.now()
      const waiter = pool.connect().then((client) => {
        waitedMs = performance.now() - startedWaiting
        return client
      })
      await sleep(20)
      expect(await seriesValue(registry, 'db_client_connection_pending_requests', of('app'))).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('app', 'used'))).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('app', 'idle'))).toBe(0)
      expect(describePool(pool)).toEqual({ poolName: 'app', total: 1, idle: 0, used: 1, waiting: 1, max: 1 })

      await sleep(280)
      holder.release()
      const second = await waiter
      expect(waitedMs).toBeGreaterThanOrEqual(250)
      expect(await seriesValue(registry, 'db_client_connection_pending_requests', of('app'))).toBe(0)

      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', of('app'))
      expect(wait.count).toBe(3)
      // the two uncontended acquires are fast; the third waited ≥ 0.25 s: it is above 0.16 s
      expect(wait.buckets.get(0.16)).toBe(2)
      expect(wait.buckets.get(Number.POSITIVE_INFINITY)).toBe(3)
      expect(wait.sum).toBeGreaterThanOrEqual(0.25)

      // use time: the held client counts only once released, and it was held ≥ 0.25 s
      const useAfterHolder = await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))
      expect(useAfterHolder.count).toBe(useBefore.count + 1)
      expect(useAfterHolder.sum - useBefore.sum).toBeGreaterThanOrEqual(0.25)
      expect(useAfterHolder.buckets.get(0.16)).toBe(useBefore.count) // the new observation is above 0.16 s
      second.release()
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))).count).toBe(useBefore.count + 2)
    })

    it('counts connect() and pool.query() that time out on an exhausted pool, and nothing else', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 1 })
      const holder = await pool.connect()
      // only now: opening that first connection may itself take longer than 100 ms on a busy machine
      pool.options.connectionTimeoutMillis = 100
      try {
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', of('app'))).toBe(0)
        const appConnects = async () => {
          try {
            return await pool.connect()
          } catch (error) {
            return error as Error
          }
        }
        const error = await appConnects()
        expect(error).toBeInstanceOf(Error)
        expect((error as Error).message).toBe('timeout exceeded when trying to connect')
        // as with a bare pg.Pool, the stack leads to the application's await, not to pg's timer
        expect((error as Error).stack).toContain(THIS_FILE)
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', of('app'))).toBe(1)
        await expect(pool.query('SELECT 1')).rejects.toThrow('timeout exceeded when trying to connect')
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', of('app'))).toBe(2)
        expect(await seriesValue(registry, 'db_client_connection_pending_requests', of('app'))).toBe(0)
      } finally {
        holder.release()
      }
      // a statement error is not a timeout
      await expect(pool.query('SELECT * FROM no_such_table')).rejects.toThrow(/no_such_table/)
      expect(await seriesValue(registry, 'db_client_connection_timeouts_total', of('app'))).toBe(2)
    })

    it('two pools share the metrics of one registry under their own pool name; a duplicate name is refused; end() retires the gauges', async () => {
      const registry = new Registry()
      const chat = makePool({ registry, poolName: 'chat' })
      const admin = makePool({ registry, poolName: 'admin' })
      expect(() => instrumentPool(new pg.Pool({ connectionString: t.url }), { poolName: 'chat', registry })).toThrow(/already reports/)
      expect(() => instrumentPool(chat, { poolName: 'other', registry })).toThrow(/already instrumented/)
      const held = await chat.connect()
      await admin.query('SELECT 1')
      expect(await seriesValue(registry, 'db_client_connection_count', inState('chat', 'used'))).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('admin', 'idle'))).toBe(1)
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', of('admin'))).count).toBe(1)
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', of('chat'))).count).toBe(1)
      held.release()
      await admin.end()
      const states = (await family(registry, 'db_client_connection_count')).values.map((v) => v.labels.db_client_connection_pool_name)
      expect(new Set(states)).toEqual(new Set(['chat']))
      const maxes = (await family(registry, 'db_client_connection_max')).values.map((v) => v.labels.db_client_connection_pool_name)
      expect(maxes).toEqual(['chat'])
      // histograms keep their history
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', of('admin'))).count).toBe(1)
      // the name is free again once its pool has ended, and the new pool continues its series
      const again = makePool({ registry, poolName: 'admin' })
      await again.query('SELECT 1')
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', of('admin'))).count).toBe(2)
      expect(await seriesValue(registry, 'db_client_connection_count', inState('admin', 'idle'))).toBe(1)
    })

    it('keeps the pg.Pool API: callback connect with done(), events, counters, query forms', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 2 })
      const events: string[] = []
      pool.on('connect', () => events.push('connect'))
      pool.on('acquire', () => events.push('acquire'))
      pool.on('release', () => events.push('release'))
      const viaCallback = await new Promise<number>((resolve, reject) => {
        pool.connect((err, client, done) => {
          if (err || !client) return reject(err ?? new Error('connect gave no client'))
          client.query('SELECT 41 + 1 AS n', (queryErr, result) => {
            done()
            return queryErr ? reject(queryErr) : resolve(result.rows[0].n as number)
          })
        })
      })
      expect(viaCallback).toBe(42)
      const { rows } = await pool.query({ text: 'SELECT $1::int * 2 AS n', values: [21] })
      expect(rows).toEqual([{ n: 42 }])
      const client = await pool.connect()
      expect(pool.totalCount).toBeGreaterThanOrEqual(1)
      expect(pool.idleCount).toBe(pool.totalCount - 1)
      expect(pool.waitingCount).toBe(0)
      client.release()
      expect(() => client.release()).toThrow(/already been released/)
      expect(events.filter((e) => e === 'acquire')).toHaveLength(3)
      expect(events.filter((e) => e === 'release')).toHaveLength(3)
      expect(events).toContain('connect')
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))).count).toBe(3)
      expect(describePool(new pg.Pool({ max: 3 }))).toEqual({ poolName: null, total: 0, idle: 0, used: 0, waiting: 0, max: 3 })
      expect(getPoolInstrumentation(pool)?.poolName).toBe('app')
    })

    it('histograms keep counting after registry.resetMetrics()', async () => {
      const registry = new Registry()
      const pool = makePool({ registry })
      await pool.query('SELECT 1')
      registry.resetMetrics()
      expect((await family(registry, 'db_client_connection_wait_time_seconds')).values).toEqual([])
      await pool.query('SELECT 1')
      await pool.query('SELECT 1')
      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', of('app'))
      expect(wait.count).toBe(2)
      expect(wait.buckets.get(Number.POSITIVE_INFINITY)).toBe(2)
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', of('app'))).count).toBe(2)
    })

    it('registry.metrics() is valid Prometheus text', async () => {
      const registry = new Registry()
      const { logger } = collectingLogger()
      const pool = makePool({ registry, logger, poolName: 'chat "main"\\pool' }, { max: 1 })
      const client = await pool.connect()
      pool.options.connectionTimeoutMillis = 50 // after the first connection is open (see above)
      await client.query('SELECT 1')
      await llmCall('chat', () => sleep(1))
      await expect(pool.connect()).rejects.toThrow(/timeout/)
      client.release()
      await pool.query('SELECT 1')
      const text = await registry.metrics()
      const { families, samples } = checkExposition(text)
      expect(Object.fromEntries(families)).toEqual({
        db_client_connection_count: 'gauge',
        db_client_connection_max: 'gauge',
        db_client_connection_pending_requests: 'gauge',
        db_client_connection_wait_time_seconds: 'histogram',
        db_client_connection_use_time_seconds: 'histogram',
        db_client_connection_timeouts_total: 'counter',
        warden_db_connection_held_during_llm_call_total: 'counter',
      })
      expect(samples).toBeGreaterThan(2 * (POOL_TIME_BUCKETS.length + 3))
      expect(text).toContain(
        'warden_db_connection_held_during_llm_call_total{db_client_connection_pool_name="chat \\"main\\"\\\\pool",operation="chat"} 1',
      )
      expect(text).toContain(
        'db_client_connection_wait_time_seconds_bucket{le="81.92",db_client_connection_pool_name="chat \\"main\\"\\\\pool"} 2',
      )
    })
  })

  describe('long hold', () => {
    it('warns once per call site about a client still held past longHoldMs', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, longHoldMs: 200, captureStacks: true })
      const holdLong = async () => {
        const client = await pool.connect()
        await client.query("SELECT 'long transaction' AS step")
        await sleep(450)
        client.release()
      }
      const holdShort = async () => {
        const client = await pool.connect()
        await client.query('SELECT 1')
        client.release()
      }
      await holdShort()
      expect(warnings).toEqual([])
      await holdLong()
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details).toMatchObject({
        event: 'db_connection_long_hold',
        released: false,
        longHoldMs: 200,
        lastQuery: "SELECT '?' AS step",
      })
      expect(warnings[0]!.details.heldMs).toBeGreaterThanOrEqual(200)
      expect(warnings[0]!.details.callSite).toContain(THIS_FILE)
      expect(warnings[0]!.message).toMatch(/still checked out/)
      await holdLong()
      expect(warnings).toHaveLength(1) // same call site
    })

    it('warns on release when the hold was long but the timer could not run (blocked event loop)', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, longHoldMs: 100 })
      const client = await pool.connect()
      busyWait(150)
      client.release()
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details).toMatchObject({ event: 'db_connection_long_hold', released: true })
      expect(warnings[0]!.details.heldMs).toBeGreaterThanOrEqual(150)
      await sleep(150) // the timer was cleared: no second warning
      expect(warnings).toHaveLength(1)
    })

    it('longHoldMs: 0 turns it off (the same ten-minute hold warns under the 5 s default)', async () => {
      // Fake clocks, so the hold can outlast the default without the test taking that long; pg's
      // own timers (setTimeout) stay real.
      const holdTenMinutes = async (options: { longHoldMs?: number }) => {
        const { logger, warnings } = collectingLogger()
        vi.useFakeTimers({ toFake: ['performance', 'setInterval', 'clearInterval'] })
        try {
          const pool = makePool({ registry: new Registry(), logger, ...options })
          const client = await pool.connect()
          vi.advanceTimersByTime(10 * 60_000)
          client.release()
          return warnings
        } finally {
          vi.useRealTimers()
        }
      }
      const underDefault = await holdTenMinutes({})
      expect(underDefault).toHaveLength(1)
      expect(underDefault[0]!.details).toMatchObject({ event: 'db_connection_long_hold', longHoldMs: 5000 })
      expect(await holdTenMinutes({ longHoldMs: 0 })).toEqual([])
    })
  })
})
