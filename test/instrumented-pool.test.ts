import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  ConnectionHeldDuringLlmCallError,
  describePool,
  getPoolInstrumentation,
  heldClients,
  instrumentPool,
  llmCall,
  POOL_METRIC_NAMES,
  POOL_TIME_BUCKETS,
  poolScope,
  type InstrumentPoolOptions,
  type PoolLogger,
  type PoolWarning,
} from '../src/pool/instrumented-pool.js'
import { Database } from '../src/db/database.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'

const THIS_FILE = 'instrumented-pool.test.ts'

interface LoggedWarning {
  details: PoolWarning
  message: string
}

function collectingLogger(): { logger: PoolLogger; warnings: LoggedWarning[] } {
  const warnings: LoggedWarning[] = []
  return { warnings, logger: { warn: (details, message) => warnings.push({ details, message }) } }
}

interface MetricValue {
  labels: Record<string, string | number>
  value: number
  metricName?: string
}

async function family(registry: Registry, name: string): Promise<{ type: string; help: string; values: MetricValue[] }> {
  const all = (await registry.getMetricsAsJSON()) as unknown as Array<{ name: string; type: string; help: string; values: MetricValue[] }>
  const found = all.find((metric) => metric.name === name)
  if (!found) throw new Error(`metric ${name} is not in the registry (has: ${all.map((metric) => metric.name).join(', ')})`)
  return found
}

/** The value of the series with exactly these labels, or undefined when there is none. */
async function seriesValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const { values } = await family(registry, name)
  const wanted = Object.entries(labels)
  const match = values.find(
    (v) => Object.keys(v.labels).length === wanted.length && wanted.every(([key, value]) => v.labels[key] === value),
  )
  return match?.value
}

async function histogram(
  registry: Registry,
  name: string,
  poolName: string,
): Promise<{ buckets: Map<number, number>; sum: number; count: number }> {
  const { values } = await family(registry, name)
  const mine = values.filter((v) => v.labels.pool_name === poolName)
  const buckets = new Map<number, number>()
  for (const v of mine.filter((v) => v.metricName === `${name}_bucket`)) {
    buckets.set(v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le), v.value)
  }
  const sum = mine.find((v) => v.metricName === `${name}_sum`)?.value ?? Number.NaN
  const count = mine.find((v) => v.metricName === `${name}_count`)?.value ?? Number.NaN
  return { buckets, sum, count }
}

const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$/

/** The labels of a sample without `le`, in a canonical order. */
function seriesKey(labelText: string): string {
  const pairs = [...labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
    .filter((m) => m[1] !== 'le')
    .map((m) => `${m[1]}=${m[2]}`)
  return `{${pairs.sort().join(',')}}`
}

/**
 * Checks the text exposition format the way a scraper reads it: every sample line parses, and
 * belongs to a family declared by HELP and TYPE before it (histograms: _bucket/_sum/_count,
 * buckets cumulative with le="+Inf" equal to _count).
 */
function checkExposition(text: string): { families: Map<string, string>; samples: number } {
  const families = new Map<string, string>()
  const helps = new Set<string>()
  const buckets = new Map<string, number[]>()
  const counts = new Map<string, number>()
  let samples = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line)
    if (comment) {
      if (comment[1] === 'HELP') helps.add(comment[2]!)
      else {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(comment[3])
        families.set(comment[2]!, comment[3]!)
      }
      continue
    }
    const sample = SAMPLE_LINE.exec(line)
    expect(sample, `not a valid sample line: ${line}`).not.toBeNull()
    samples += 1
    const name = sample![1]!
    const base = [...families.keys()].find(
      (f) => name === f || (families.get(f) === 'histogram' && [`${f}_bucket`, `${f}_sum`, `${f}_count`].includes(name)),
    )
    expect(base, `sample ${name} has no TYPE line before it`).toBeDefined()
    expect(helps.has(base!), `family ${base} has no HELP`).toBe(true)
    if (families.get(base!) === 'counter') expect(base!.endsWith('_total')).toBe(true)
    const series = seriesKey(sample![2] ?? '')
    if (name.endsWith('_bucket')) {
      const key = `${base}${series}`
      buckets.set(key, [...(buckets.get(key) ?? []), Number(sample![3])])
      if (/le="\+Inf"/.test(sample![2] ?? '')) counts.set(key, Number(sample![3]))
    }
    if (name === `${base}_count`) expect(counts.get(`${base}${series}`), `${line}: +Inf bucket must equal _count`).toBe(Number(sample![3]))
  }
  for (const [key, values] of buckets) {
    for (let i = 1; i < values.length; i += 1)
      expect(values[i]!, `${key} buckets must be cumulative`).toBeGreaterThanOrEqual(values[i - 1]!)
  }
  return { families, samples }
}

function busyWait(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // block the event loop on purpose
  }
}

describe('instrumented pg.Pool (real PostgreSQL)', () => {
  let t: TestDatabase
  const pools: pg.Pool[] = []

  beforeAll(async () => {
    t = await createTestDatabase('pool')
  })
  afterAll(async () => {
    await t.drop()
  })
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => (pool.ended || pool.ending ? Promise.resolve() : pool.end())))
  })

  function makePool(options: Partial<InstrumentPoolOptions> & { registry: Registry }, config: pg.PoolConfig = {}): pg.Pool {
    const pool = instrumentPool(new pg.Pool({ connectionString: t.url, max: 4, ...config }), {
      poolName: 'app',
      logger: collectingLogger().logger,
      ...options,
    })
    pools.push(pool)
    return pool
  }

  describe('metrics', () => {
    it('publishes the six metrics with their exact names, types and labels, and buckets from 0.5 ms to minutes', async () => {
      const registry = new Registry()
      const pool = makePool({ registry })
      await pool.query('SELECT 1')
      const client = await pool.connect()
      client.release()

      const expected: Array<[string, string, string[]]> = [
        ['db_client_connection_count', 'gauge', ['pool_name', 'state']],
        ['db_client_connection_pending_requests', 'gauge', ['pool_name']],
        ['db_client_connection_wait_time_seconds', 'histogram', ['le', 'pool_name']],
        ['db_client_connection_use_time_seconds', 'histogram', ['le', 'pool_name']],
        ['db_client_connection_timeouts_total', 'counter', ['pool_name']],
      ]
      for (const [name, type, labels] of expected) {
        const metric = await family(registry, name)
        expect(metric.type, name).toBe(type)
        expect(metric.values.length, `${name} has series`).toBeGreaterThan(0)
        for (const value of metric.values) {
          const keys = Object.keys(value.labels).sort()
          // histogram _sum/_count carry pool_name only
          expect(
            keys.filter((key) => key !== 'le'),
            name,
          ).toEqual(labels.filter((key) => key !== 'le'))
          expect(value.labels.pool_name).toBe('app')
        }
      }
      // the LLM-call counter exists (HELP/TYPE) before its first increment, with no series yet
      const held = await family(registry, 'warden_db_connection_held_during_llm_call_total')
      expect(held.type).toBe('counter')
      expect(held.values).toEqual([])
      expect(Object.values(POOL_METRIC_NAMES).sort()).toEqual(
        [...expected.map(([name]) => name), 'warden_db_connection_held_during_llm_call_total'].sort(),
      )

      const states = (await family(registry, 'db_client_connection_count')).values.map((v) => v.labels.state).sort()
      expect(states).toEqual(['idle', 'used'])
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'app', state: 'idle' })).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'app', state: 'used' })).toBe(0)

      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', 'app')
      const bounds = [...wait.buckets.keys()].filter(Number.isFinite)
      expect(bounds).toEqual([...POOL_TIME_BUCKETS])
      for (const otel of [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92])
        expect(bounds).toContain(otel)
      for (const fast of [0.0005, 0.001, 0.0025, 0.005]) expect(bounds).toContain(fast)
      expect(Math.max(...bounds)).toBeGreaterThan(81.92)
      expect(wait.count).toBe(2) // pool.query and connect both acquire
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', 'app')).count).toBe(2)
    })

    it('wait time grows when the pool is saturated, the pending gauge shows the waiter, use time is recorded on release', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 1 })
      ;(await pool.connect()).release() // a warm, idle connection
      const holder = await pool.connect()
      const useBefore = await histogram(registry, 'db_client_connection_use_time_seconds', 'app')

      let waitedMs = 0
      const startedWaiting = performance.now()
      const waiter = pool.connect().then((client) => {
        waitedMs = performance.now() - startedWaiting
        return client
      })
      await sleep(20)
      expect(await seriesValue(registry, 'db_client_connection_pending_requests', { pool_name: 'app' })).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'app', state: 'used' })).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'app', state: 'idle' })).toBe(0)
      expect(describePool(pool)).toEqual({ poolName: 'app', total: 1, idle: 0, used: 1, waiting: 1, max: 1 })

      await sleep(280)
      holder.release()
      const second = await waiter
      expect(waitedMs).toBeGreaterThanOrEqual(250)
      expect(await seriesValue(registry, 'db_client_connection_pending_requests', { pool_name: 'app' })).toBe(0)

      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', 'app')
      expect(wait.count).toBe(3)
      // the two uncontended acquires are fast; the third waited ≥ 0.25 s: it is above 0.16 s
      expect(wait.buckets.get(0.16)).toBe(2)
      expect(wait.buckets.get(Number.POSITIVE_INFINITY)).toBe(3)
      expect(wait.sum).toBeGreaterThanOrEqual(0.25)

      // use time: the held client counts only once released, and it was held ≥ 0.25 s
      const useAfterHolder = await histogram(registry, 'db_client_connection_use_time_seconds', 'app')
      expect(useAfterHolder.count).toBe(useBefore.count + 1)
      expect(useAfterHolder.sum - useBefore.sum).toBeGreaterThanOrEqual(0.25)
      expect(useAfterHolder.buckets.get(0.16)).toBe(useBefore.count) // the new observation is above 0.16 s
      second.release()
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', 'app')).count).toBe(useBefore.count + 2)
    })

    it('counts connect() and pool.query() that time out on an exhausted pool, and nothing else', async () => {
      const registry = new Registry()
      const pool = makePool({ registry }, { max: 1, connectionTimeoutMillis: 100 })
      const holder = await pool.connect()
      try {
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', { pool_name: 'app' })).toBe(0)
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
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', { pool_name: 'app' })).toBe(1)
        await expect(pool.query('SELECT 1')).rejects.toThrow('timeout exceeded when trying to connect')
        expect(await seriesValue(registry, 'db_client_connection_timeouts_total', { pool_name: 'app' })).toBe(2)
        expect(await seriesValue(registry, 'db_client_connection_pending_requests', { pool_name: 'app' })).toBe(0)
      } finally {
        holder.release()
      }
      // a statement error is not a timeout
      await expect(pool.query('SELECT * FROM no_such_table')).rejects.toThrow(/no_such_table/)
      expect(await seriesValue(registry, 'db_client_connection_timeouts_total', { pool_name: 'app' })).toBe(2)
    })

    it('two pools share the metrics of one registry under their own pool_name; a duplicate name is refused; end() retires the gauges', async () => {
      const registry = new Registry()
      const chat = makePool({ registry, poolName: 'chat' })
      const admin = makePool({ registry, poolName: 'admin' })
      expect(() => instrumentPool(new pg.Pool({ connectionString: t.url }), { poolName: 'chat', registry })).toThrow(/already reports/)
      expect(() => instrumentPool(chat, { poolName: 'other', registry })).toThrow(/already instrumented/)
      const held = await chat.connect()
      await admin.query('SELECT 1')
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'chat', state: 'used' })).toBe(1)
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'admin', state: 'idle' })).toBe(1)
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', 'admin')).count).toBe(1)
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', 'chat')).count).toBe(1)
      held.release()
      await admin.end()
      const states = (await family(registry, 'db_client_connection_count')).values.map((v) => v.labels.pool_name)
      expect(new Set(states)).toEqual(new Set(['chat']))
      // histograms keep their history
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', 'admin')).count).toBe(1)
      // the name is free again once its pool has ended, and the new pool continues its series
      const again = makePool({ registry, poolName: 'admin' })
      await again.query('SELECT 1')
      expect((await histogram(registry, 'db_client_connection_wait_time_seconds', 'admin')).count).toBe(2)
      expect(await seriesValue(registry, 'db_client_connection_count', { pool_name: 'admin', state: 'idle' })).toBe(1)
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
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', 'app')).count).toBe(3)
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
      const wait = await histogram(registry, 'db_client_connection_wait_time_seconds', 'app')
      expect(wait.count).toBe(2)
      expect(wait.buckets.get(Number.POSITIVE_INFINITY)).toBe(2)
      expect((await histogram(registry, 'db_client_connection_use_time_seconds', 'app')).count).toBe(2)
    })

    it('registry.metrics() is valid Prometheus text', async () => {
      const registry = new Registry()
      const { logger } = collectingLogger()
      const pool = makePool({ registry, logger, poolName: 'chat "main"\\pool' }, { max: 1, connectionTimeoutMillis: 50 })
      const client = await pool.connect()
      await client.query('SELECT 1')
      await llmCall('chat', () => sleep(1))
      await expect(pool.connect()).rejects.toThrow(/timeout/)
      client.release()
      await pool.query('SELECT 1')
      const text = await registry.metrics()
      const { families, samples } = checkExposition(text)
      expect(Object.fromEntries(families)).toEqual({
        db_client_connection_count: 'gauge',
        db_client_connection_pending_requests: 'gauge',
        db_client_connection_wait_time_seconds: 'histogram',
        db_client_connection_use_time_seconds: 'histogram',
        db_client_connection_timeouts_total: 'counter',
        warden_db_connection_held_during_llm_call_total: 'counter',
      })
      expect(samples).toBeGreaterThan(2 * (POOL_TIME_BUCKETS.length + 3))
      expect(text).toContain('warden_db_connection_held_during_llm_call_total{pool_name="chat \\"main\\"\\\\pool",operation="chat"} 1')
      expect(text).toContain('db_client_connection_wait_time_seconds_bucket{le="81.92",pool_name="chat \\"main\\"\\\\pool"} 2')
    })
  })

  describe('held during an LLM call', () => {
    /** The anti-pattern of PROBLEMS.md §1: read, then call the LLM with the client still checked out. */
    async function turnHoldingConnection(pool: pg.Pool): Promise<void> {
      const client = await pool.connect()
      await client.query("SELECT 'load chat history' AS step, $1::text AS api_key WHERE 'sk-inline-literal' <> ''", ['sk-secret-value-123'])
      await llmCall('chat', () => sleep(50))
      client.release()
    }

    /** The rule: open, read, close; call the LLM with nothing held; open again, write, close. */
    async function turnReleasingFirst(pool: pg.Pool): Promise<void> {
      const client = await pool.connect()
      try {
        await client.query("SELECT 'load chat history' AS step")
      } finally {
        client.release()
      }
      await llmCall('chat', () => sleep(50))
      const writer = await pool.connect()
      try {
        await writer.query("SELECT 'save reply' AS step")
      } finally {
        writer.release()
      }
    }

    async function heldCount(registry: Registry, operation = 'chat', poolName = 'app'): Promise<number> {
      return (await seriesValue(registry, 'warden_db_connection_held_during_llm_call_total', { pool_name: poolName, operation })) ?? 0
    }

    it('counts and warns once, with the last statement text (no values) and the acquiring frame in this file', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, captureStacks: true })
      await turnHoldingConnection(pool)
      expect(await heldCount(registry)).toBe(1)
      expect(warnings).toHaveLength(1)
      const [{ details, message }] = warnings as [LoggedWarning]
      expect(details).toMatchObject({ event: 'db_connection_held_during_llm_call', poolName: 'app', operation: 'chat' })
      // bind values are never recorded; inline string literals show as '?'
      expect(details.lastQuery).toBe("SELECT '?' AS step, $1::text AS api_key WHERE '?' <> '?'")
      expect(JSON.stringify(details) + message).not.toContain('sk-secret-value-123')
      expect(JSON.stringify(details) + message).not.toContain('sk-inline-literal')
      expect(details.callSite).toContain(THIS_FILE)
      expect(details.callSite).toContain('turnHoldingConnection')
      expect(details.stack).toContain(THIS_FILE)
      expect(details.stack).not.toMatch(/src[\\/]pool[\\/]/)
      expect(details.heldMs).toBeGreaterThanOrEqual(0)
      expect(details.llmCallStack).toContain(THIS_FILE)
      expect(message).toMatch(/held during LLM call "chat"/)
      expect(message).not.toMatch(/on demand/)
    })

    it('the correct pattern (release before the call) counts nothing and logs nothing', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      await turnReleasingFirst(pool)
      await turnReleasingFirst(pool)
      expect(await heldCount(registry)).toBe(0)
      expect(warnings).toEqual([])
      expect(heldClients()).toEqual([])
    })

    it('parallel tool calls each on their own client, LLM call after all are released: nothing counted', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      const tool = async (name: string) => {
        const client = await pool.connect()
        try {
          await client.query('SELECT $1::text AS tool, pg_sleep(0.05)', [name])
        } finally {
          client.release()
        }
      }
      const first = await pool.connect()
      await first.query('SELECT 1')
      first.release()
      await Promise.all([tool('search'), tool('lookup'), tool('cost-tracker')])
      await llmCall('chat', () => sleep(10))
      expect(await heldCount(registry)).toBe(0)
      expect(warnings).toEqual([])
    })

    it('the same call site twice is counted twice and logged once; another operation has its own series', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, captureStacks: true })
      await turnHoldingConnection(pool)
      await turnHoldingConnection(pool)
      expect(await heldCount(registry)).toBe(2)
      expect(warnings).toHaveLength(1)
      const client = await pool.connect()
      await llmCall('summarise', () => sleep(1))
      client.release()
      expect(await heldCount(registry, 'summarise')).toBe(1)
      expect(warnings).toHaveLength(2) // a different acquiring call site
    })

    it('a nested agent calling the LLM while its parent holds a client is counted', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      const subAgent = async () => {
        await sleep(5)
        return llmCall('sub_agent', () => sleep(5))
      }
      const parent = await pool.connect()
      try {
        await parent.query("SELECT 'parent reads' AS step")
        await subAgent()
      } finally {
        parent.release()
      }
      expect(await heldCount(registry, 'sub_agent')).toBe(1)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details.lastQuery).toBe("SELECT '?' AS step")
    })

    it('pool.query() holds a client only for its statement: concurrent or surrounding LLM calls do not count', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      await Promise.all([
        pool.query('SELECT pg_sleep(0.2)'),
        (async () => {
          await sleep(30)
          await llmCall('chat', () => sleep(30))
        })(),
      ])
      await pool.query('SELECT 1')
      await llmCall('chat', () => sleep(1))
      expect(getPoolInstrumentation(pool)?.pending).toBe(0)
      expect(await heldCount(registry)).toBe(0)
      expect(warnings).toEqual([])
    })

    it('a client held by one request is not charged to a concurrent request that did not start from it', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      const signal = () => {
        let open!: () => void
        const opened = new Promise<void>((resolve) => (open = resolve))
        return { open, opened }
      }
      const aHolds = signal()
      const aMayRelease = signal()
      let heldByA = -1
      // two requests started from separate event-loop turns, as an HTTP server starts them
      const requestA = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          void (async () => {
            const client = await pool.connect()
            try {
              await client.query("SELECT 'request A holds' AS step")
              heldByA = heldClients().length
              aHolds.open()
              await aMayRelease.opened
            } finally {
              client.release()
            }
          })().then(resolve, reject)
        }),
      )
      try {
        await aHolds.opened
        expect(heldByA).toBe(1) // A does hold a client while B calls the LLM
        const requestB = new Promise<number>((resolve, reject) =>
          setImmediate(() => {
            void llmCall('chat', () => heldClients().length).then(resolve, reject)
          }),
        )
        expect(await requestB).toBe(0)

        // work started in the same tick shares its caller's context, unless each runs in poolScope
        const cHolds = signal()
        const cMayRelease = signal()
        const scoped = await Promise.all([
          poolScope(async () => {
            const client = await pool.connect()
            cHolds.open()
            await cMayRelease.opened
            client.release()
            return -1
          }),
          poolScope(async () => {
            await cHolds.opened
            const seen = await llmCall('chat', () => heldClients().length)
            cMayRelease.open()
            return seen
          }),
        ])
        expect(scoped[1]).toBe(0)
      } finally {
        aMayRelease.open()
        await requestA
      }
      expect(await heldCount(registry)).toBe(0)
      expect(warnings).toEqual([])
    })

    it('by default stacks are captured on demand: the first occurrence warns without the acquiring stack and turns capture on, the next names the call site', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger })
      expect(getPoolInstrumentation(pool)?.capturingStacks).toBe(false)
      await turnHoldingConnection(pool)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details).toMatchObject({ callSite: undefined, stack: undefined })
      expect(warnings[0]!.details.lastQuery).toContain('AS step, $1::text AS api_key')
      expect(warnings[0]!.details.llmCallStack).toContain(THIS_FILE) // where the LLM call is made
      expect(warnings[0]!.message).toMatch(/captured on demand/)
      expect(getPoolInstrumentation(pool)?.capturingStacks).toBe(true)
      await turnHoldingConnection(pool)
      expect(warnings).toHaveLength(2)
      expect(warnings[1]!.details.callSite).toContain(THIS_FILE)
      expect(warnings[1]!.details.callSite).toContain('turnHoldingConnection')
      await turnHoldingConnection(pool)
      expect(warnings).toHaveLength(2)
      expect(await heldCount(registry)).toBe(3)
    })

    it("works through a wrapper (Warden's Database.withClient): stackIgnore skips the wrapper to find the call site", async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const db = new Database({ url: t.url, applicationName: 'warden-test', connectTimeout: 5, statementTimeout: 30, poolMax: 2 })
      instrumentPool(db.pool, { poolName: 'warden', registry, logger, captureStacks: true, stackIgnore: [/src[\\/]db[\\/]database\.ts/] })
      try {
        await db.withClient(async (client) => {
          await client.query("SELECT 'inside withClient' AS step")
          await llmCall('chat', () => sleep(1))
        })
        await db.ping() // pool.query: not a holder
      } finally {
        await db.close()
      }
      expect(await heldCount(registry, 'chat', 'warden')).toBe(1)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details.callSite).toContain(THIS_FILE)
      expect(warnings[0]!.details.stack).toMatch(/database\.ts/) // the full stack still shows the wrapper
      expect(warnings[0]!.details.lastQuery).toBe("SELECT '?' AS step")
    })

    it('statement text: keepQueryLiterals keeps literals, maxQueryTextLength truncates', async () => {
      const registry = new Registry()
      const pool = makePool({ registry, keepQueryLiterals: true, maxQueryTextLength: 40 })
      const client = await pool.connect()
      try {
        await client.query(`SELECT 'kept literal' AS a, ${Array.from({ length: 30 }, (_, i) => `${i} AS c${i}`).join(', ')}`)
        const [info] = heldClients()
        expect(info!.lastQuery).toBe(`SELECT 'kept literal' AS a, 0 AS c0, 1 A…`) // 40 characters and an ellipsis
      } finally {
        client.release()
      }
      expect(heldClients()).toEqual([])
    })

    it('strict mode throws before the call; captureStacks: false still counts and warns once per operation', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, captureStacks: false })
      const client = await pool.connect()
      let called = false
      try {
        await client.query('SELECT 1 AS strict_check')
        const error = await llmCall('chat', async () => (called = true), { strict: true }).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(ConnectionHeldDuringLlmCallError)
        expect((error as ConnectionHeldDuringLlmCallError).held[0]).toMatchObject({
          poolName: 'app',
          lastQuery: 'SELECT 1 AS strict_check',
          callSite: undefined,
          stack: undefined,
        })
        expect(called).toBe(false)
        await llmCall('chat', () => sleep(1))
      } finally {
        client.release()
      }
      expect(await heldCount(registry)).toBe(2)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.details.stack).toBeUndefined()
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

    it('longHoldMs: 0 turns it off', async () => {
      const registry = new Registry()
      const { logger, warnings } = collectingLogger()
      const pool = makePool({ registry, logger, longHoldMs: 0 })
      const client = await pool.connect()
      busyWait(30)
      client.release()
      await sleep(20)
      expect(warnings).toEqual([])
    })
  })
})
