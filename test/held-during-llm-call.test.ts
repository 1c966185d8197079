import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import type pg from 'pg'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db/database.js'
import {
  ConnectionHeldDuringLlmCallError,
  heldClients,
  instrumentPool,
  llmCall,
  getPoolInstrumentation,
  POOL_METRIC_NAMES,
  poolScope,
} from '../src/pool/instrumented-pool.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { backendPid, collectingLogger, heldCount, poolFixture, serveOnRandomPort, signal, type LoggedWarning } from './helpers/pool.js'
import { family } from './helpers/registry.js'

const THIS_FILE = 'held-during-llm-call.test.ts'

let t: TestDatabase
const { makePool, endAll } = poolFixture(() => t)

beforeAll(async () => {
  t = await createTestDatabase('held_llm')
})
afterAll(async () => {
  await t.drop()
})
afterEach(async () => {
  // a test that failed half-way must not leave a client in the process's root operation for the next one
  expect(heldClients(), 'clients still held after the test').toEqual([])
  await endAll()
})

/** The anti-pattern of PROBLEMS.md §1: read, then call the LLM with the client still checked out. */
async function turnHoldingConnection(pool: pg.Pool): Promise<void> {
  const client = await pool.connect()
  await client.query("SELECT 'load chat history' AS step, $1::text AS api_key WHERE 'sk-inline-literal' <> ''", ['sk-secret-value-123'])
  await llmCall('chat', () => sleep(50))
  client.release()
}

describe('llmCall() while a connection is held: the counter, the warning, strict mode', () => {
  it('counts and warns once, with the last statement text (no values), the backend pid and the acquiring frame in this file', async () => {
    const registry = new Registry()
    const { logger, warnings } = collectingLogger()
    const pool = makePool({ registry, logger, captureStacks: true, poolName: 'app' }, { application_name: 'held-llm-pid' })
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

    // the pid names the backend PostgreSQL itself reports for that connection
    const client = await pool.connect()
    try {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      const [held] = heldClients()
      expect(held?.backendPid).toBe(rows[0]!.pid)
      const server = await t.exec("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND application_name = 'held-llm-pid'", [
        rows[0]!.pid,
      ])
      expect(server.rows[0]).toEqual({ n: 1 })
    } finally {
      client.release()
    }
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

  it('by default stacks are captured on demand: the first occurrence warns without the acquiring stack and turns capture on, the next names the call site', async () => {
    const registry = new Registry()
    const { logger, warnings } = collectingLogger()
    const pool = makePool({ registry, logger })
    const instrumentation = () => getPoolInstrumentation(pool)
    expect(instrumentation()?.capturingStacks).toBe(false)
    await turnHoldingConnection(pool)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.details).toMatchObject({ callSite: undefined, stack: undefined })
    expect(warnings[0]!.details.lastQuery).toContain('AS step, $1::text AS api_key')
    expect(warnings[0]!.details.llmCallStack).toContain(THIS_FILE) // where the LLM call is made
    expect(warnings[0]!.message).toMatch(/captured on demand/)
    expect(instrumentation()?.capturingStacks).toBe(true)
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
        backendPid: backendPid(client),
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

  it('detectHeldDuringLlmCall: false tracks nothing (the metrics stay)', async () => {
    const registry = new Registry()
    const pool = makePool({ registry, detectHeldDuringLlmCall: false })
    const client = await pool.connect()
    try {
      await llmCall('chat', () => expect(heldClients()).toEqual([]))
    } finally {
      client.release()
    }
    expect(await heldCount(registry)).toBe(0)
  })
})

/** What one LLM call of a pattern saw, against what the pattern's own code held at that moment. */
interface Observation {
  operation: string
  /** backend pids heldClients() reported at the start of the call */
  seen: number[]
  /** backend pids of the clients the pattern's code had acquired and not yet released */
  known: number[]
}

const pids = (list: number[]) => [...list].sort((a, b) => a - b)

interface Pattern {
  pool: pg.Pool
  /**
   * The LLM call under test: `holding` is what the calling code knows it holds (its own variables,
   * not Warden's view). Records heldClients() as llmCall sees it, and lasts a few milliseconds.
   */
  llm: (operation: string, holding: pg.PoolClient[]) => Promise<void>
}

/**
 * Runs a pattern on a fresh instrumented pool and checks the three figures agree: the counter's
 * increase, the number of LLM calls the pattern made while its own code held a client (`expected`,
 * the catalogue's figure), and at each call the clients heldClients() named against those the
 * code held.
 */
async function expectPattern(expected: number, run: (p: Pattern) => Promise<void>, config: pg.PoolConfig = {}): Promise<Observation[]> {
  const registry = new Registry()
  const pool = makePool({ registry }, config)
  const observations: Observation[] = []
  const llm = async (operation: string, holding: pg.PoolClient[]) => {
    const known = pids(holding.map(backendPid))
    const seen = await llmCall(operation, () => pids(heldClients().map((info) => info.backendPid!)))
    observations.push({ operation, seen, known })
    await sleep(5)
  }
  await run({ pool, llm })
  for (const o of observations) expect(o.seen, `heldClients() at the LLM call "${o.operation}"`).toEqual(o.known)
  expect(observations.filter((o) => o.known.length > 0).length, 'LLM calls the code made while holding a client').toBe(expected)
  const counted = (await family(registry, POOL_METRIC_NAMES.heldDuringLlmCall)).values.reduce((sum, v) => sum + v.value, 0)
  expect(counted, POOL_METRIC_NAMES.heldDuringLlmCall).toBe(expected)
  return observations
}

/** A helper that awaits something (a config read, a lazy init) before it acquires: issue 12's `await null` case. */
const acquireLater = async (pool: pg.Pool) => {
  await Promise.resolve()
  return pool.connect()
}

describe('what counts: acquisition patterns of real code, each with its count', () => {
  it('the anti-pattern (connect, read, LLM call, release): 1', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const client = await pool.connect()
      await client.query("SELECT 'history' AS step")
      await llm('chat', [client])
      client.release()
    })
  })

  it('release before call (read and release, LLM call, connect again to write): 0', async () => {
    await expectPattern(0, async ({ pool, llm }) => {
      const reader = await pool.connect()
      await reader.query("SELECT 'history' AS step")
      reader.release()
      await llm('chat', [])
      const writer = await pool.connect()
      await writer.query("SELECT 'save reply' AS step")
      writer.release()
    })
  })

  it('a helper that awaits before pool.connect() and returns the client (issue 12): 1', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const client = await acquireLater(pool)
      await llm('x', [client])
      client.release()
    })
  })

  it('a helper that acquires, prepares the session (SET) and returns the client, several awaits deep: 1', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const session = async () => {
        await sleep(1)
        const client = await pool.connect()
        await client.query("SET statement_timeout = '5s'")
        return client
      }
      const outer = async () => ({ client: await session() })
      const { client } = await outer()
      await llm('chat', [client])
      client.release()
    })
  })

  it('a repository class keeping its client on the instance across methods: 1; one that checks out per method: 0', async () => {
    class SessionRepository {
      client: pg.PoolClient | undefined
      constructor(private readonly pool: pg.Pool) {}
      async open(): Promise<void> {
        await sleep(1)
        this.client = await this.pool.connect()
      }
      async history(id: string): Promise<unknown[]> {
        if (this.client) return (await this.client.query('SELECT $1::text AS id', [id])).rows
        const client = await this.pool.connect()
        try {
          return (await client.query('SELECT $1::text AS id', [id])).rows
        } finally {
          client.release()
        }
      }
      close(): void {
        this.client?.release()
        this.client = undefined
      }
    }
    await expectPattern(1, async ({ pool, llm }) => {
      const kept = new SessionRepository(pool)
      await kept.open()
      await kept.history('s1')
      await llm('chat', [kept.client!])
      kept.close()
      const perCall = new SessionRepository(pool)
      await perCall.history('s2')
      await llm('chat', [])
    })
  })

  it('a transaction wrapper withTx(fn): the LLM called inside the callback 1, after the commit 0', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const withTx = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
        const client = await acquireLater(pool)
        try {
          await client.query('BEGIN')
          const result = await fn(client)
          await client.query('COMMIT')
          return result
        } catch (error) {
          await client.query('ROLLBACK')
          throw error
        } finally {
          client.release()
        }
      }
      await withTx(async (client) => {
        await client.query("SELECT 'lock the session' AS step")
        await llm('inside_tx', [client])
      })
      await withTx((client) => client.query('SELECT 1'))
      await llm('after_tx', [])
    })
  })

  it('callback-style connect: the LLM called from the callback, and a promisified callback helper: 2', async () => {
    await expectPattern(2, async ({ pool, llm }) => {
      await new Promise<void>((resolve, reject) =>
        pool.connect((err, client, done) => {
          if (err || !client) return reject(err ?? new Error('no client'))
          llm('callback', [client]).then(() => {
            done()
            resolve()
          }, reject)
        }),
      )
      const checkout = () =>
        new Promise<{ client: pg.PoolClient; done: () => void }>((resolve, reject) =>
          pool.connect((err, client, done) => (err || !client ? reject(err ?? new Error('no client')) : resolve({ client, done }))),
        )
      const { client, done } = await checkout()
      await llm('promisified', [client])
      done()
    })
  })

  it('nested poolScope: a sub-agent in its own scope while the parent holds a client 1; the parent released first 0', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const parent = await pool.connect()
      await parent.query("SELECT 'parent reads' AS step")
      await poolScope(async () => {
        await sleep(1)
        await llm('sub_agent', [parent]) // the parent waits for it, holding its client
      })
      parent.release()
      await poolScope(() => llm('sub_agent', []))
    })
  })

  it('sibling poolScopes: one holds its client while the other calls the LLM: 0', async () => {
    await expectPattern(0, async ({ pool, llm }) => {
      const holds = signal()
      const called = signal()
      await Promise.all([
        poolScope(async () => {
          const client = await acquireLater(pool)
          holds.open()
          await called.opened
          client.release()
        }),
        poolScope(async () => {
          await holds.opened
          await llm('chat', [])
          called.open()
        }),
      ])
    })
  })

  it('a poolScope whose fn returns its client still checked out hands it to the caller: 1', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      const client = await poolScope(() => acquireLater(pool))
      await llm('chat', [client])
      client.release()
    })
  })

  it('poolScope passes through what fn returns or throws (sync and async), released clients stay released: 0', async () => {
    await expectPattern(0, async ({ pool, llm }) => {
      expect(poolScope(() => 42)).toBe(42)
      await expect(
        poolScope(async () => {
          const client = await acquireLater(pool)
          client.release()
          throw new Error('tool failed')
        }),
      ).rejects.toThrow('tool failed')
      await llm('chat', [])
    })
  })

  it('parallel tool calls, each on its own client, all released before the LLM call: 0', async () => {
    await expectPattern(
      0,
      async ({ pool, llm }) => {
        const tool = async (name: string) => {
          const client = await acquireLater(pool)
          try {
            await client.query('SELECT $1::text AS tool, pg_sleep(0.02)', [name])
          } finally {
            client.release()
          }
        }
        await Promise.all([tool('search'), tool('lookup'), tool('cost-tracker')])
        await llm('chat', [])
      },
      { max: 3 },
    )
  })

  it('parallel tool calls that return their clients, released only after the LLM call: 1 call, 3 clients', async () => {
    const [call] = await expectPattern(
      1,
      async ({ pool, llm }) => {
        const tool = async (name: string) => {
          const client = await acquireLater(pool)
          await client.query('SELECT $1::text AS tool', [name])
          return client
        }
        const clients = await Promise.all([tool('search'), tool('lookup'), tool('cost-tracker')])
        await llm('chat', clients)
        for (const client of clients) client.release()
      },
      { max: 3 },
    )
    expect(call!.seen).toHaveLength(3)
  })

  it('parallel tools in their own poolScope, each calling the LLM while holding its own client: 3, each sees only its own', async () => {
    const calls = await expectPattern(
      3,
      async ({ pool, llm }) => {
        const allHold = signal()
        let holding = 0
        const tool = (name: string) =>
          poolScope(async () => {
            const client = await acquireLater(pool)
            await client.query('SELECT $1::text AS tool', [name])
            if (++holding === 3) allHold.open()
            await allHold.opened // all three hold a client at the time of each call
            await llm(name, [client])
            client.release()
          })
        await Promise.all([tool('search'), tool('lookup'), tool('summarise')])
      },
      { max: 3 },
    )
    for (const call of calls) expect(call.seen).toHaveLength(1)
  })

  it('a job run by a timer, acquiring through a helper: 1; two timer jobs each in poolScope, one holding while the other calls: 0', async () => {
    await expectPattern(1, async ({ pool, llm }) => {
      await new Promise<void>((resolve, reject) => {
        setTimeout(() => {
          void (async () => {
            const client = await acquireLater(pool)
            await llm('nightly_summary', [client])
            client.release()
          })().then(resolve, reject)
        }, 1)
      })
      const aHolds = signal()
      const bCalled = signal()
      const job = (fn: () => Promise<void>) =>
        new Promise<void>((resolve, reject) => setTimeout(() => void poolScope(fn).then(resolve, reject), 1))
      await Promise.all([
        job(async () => {
          const client = await acquireLater(pool)
          aHolds.open()
          await bCalled.opened
          client.release()
        }),
        job(async () => {
          await aHolds.opened
          await llm('digest', [])
          bCalled.open()
        }),
      ])
    })
  })

  it('pool.query(), during or around an LLM call, never counts: 0', async () => {
    await expectPattern(0, async ({ pool, llm }) => {
      await Promise.all([
        pool.query('SELECT pg_sleep(0.1)'),
        (async () => {
          await sleep(20)
          await llm('chat', [])
        })(),
      ])
      await pool.query('SELECT 1')
      await llm('chat', [])
    })
  })

  it('a connect() still waiting or timed out holds nothing; only the client in hand counts: 1', async () => {
    await expectPattern(
      1,
      async ({ pool, llm }) => {
        const held = await pool.connect()
        pool.options.connectionTimeoutMillis = 100 // once the first connection is open: opening it may take longer on a busy machine
        const timedOut = pool.connect().catch((error: unknown) => error)
        await llm('while_waiting', [held]) // the second connect() is queued: no client yet
        expect(await timedOut).toBeInstanceOf(Error)
        held.release()
        await llm('after_timeout', [])
      },
      { max: 1 },
    )
  })

  it('two clients of one pool held at once: one increment for the call, both clients named: 1', async () => {
    const [call] = await expectPattern(1, async ({ pool, llm }) => {
      const a = await pool.connect()
      const b = await acquireLater(pool)
      await llm('chat', [a, b])
      b.release()
      a.release()
    })
    expect(call!.seen).toHaveLength(2)
  })

  it('clients of two pools held at once: one increment on each pool', async () => {
    const registry = new Registry()
    const chat = makePool({ registry, poolName: 'chat' })
    const audit = makePool({ registry, poolName: 'audit' })
    const a = await chat.connect()
    const b = await acquireLater(audit)
    const seen = await llmCall('chat', () => heldClients().map((info) => info.poolName))
    b.release()
    a.release()
    expect(seen.sort()).toEqual(['audit', 'chat'])
    expect(await heldCount(registry, 'chat', 'chat')).toBe(1)
    expect(await heldCount(registry, 'chat', 'audit')).toBe(1)
  })
})

describe('what counts in an HTTP server: every request is its own operation', () => {
  it('Express: a client a middleware stashed on req counts for that request (1 each), not for a concurrent one holding nothing (0)', async () => {
    const aHolds = signal()
    const bDone = signal()
    const observations = await expectPattern(1, async ({ pool, llm }) => {
      const app = express()
      const requestClient = new WeakMap<express.Request, pg.PoolClient>()
      app.use((req, res, next) => {
        if (req.path !== '/holds') return next()
        // an auth or tenant middleware that looks something up, then keeps a client for the handler
        void acquireLater(pool).then((client) => {
          requestClient.set(req, client)
          res.on('finish', () => client.release())
          next()
        }, next)
      })
      app.get('/holds', async (req, res) => {
        await llm('chat', [requestClient.get(req)!])
        aHolds.open()
        await bDone.opened
        res.json({ ok: true })
      })
      app.get('/free', async (_req, res) => {
        await aHolds.opened // request A holds its client right now
        await llm('chat', [])
        bDone.open()
        res.json({ ok: true })
      })
      const server = await serveOnRandomPort(app)
      try {
        const [a, b] = await Promise.all([fetch(`${server.url}/holds`), fetch(`${server.url}/free`)])
        expect([a.status, b.status]).toEqual([200, 200])
      } finally {
        await server.close()
      }
    })
    expect(observations).toHaveLength(2)
  })

  it('Express: concurrent requests each holding their own client see only their own: 1 each', async () => {
    const observations = await expectPattern(
      3,
      async ({ pool, llm }) => {
        const app = express()
        const allHold = signal()
        let holding = 0
        app.post('/turn/:id', async (req, res) => {
          const client = await acquireLater(pool)
          try {
            await client.query('SELECT $1::text AS turn', [req.params.id])
            if (++holding === 3) allHold.open()
            await allHold.opened
            await llm('chat', [client])
          } finally {
            client.release()
          }
          res.json({ ok: true })
        })
        const server = await serveOnRandomPort(app)
        try {
          const replies = await Promise.all(['a', 'b', 'c'].map((id) => fetch(`${server.url}/turn/${id}`, { method: 'POST' })))
          expect(replies.map((reply) => reply.status)).toEqual([200, 200, 200])
        } finally {
          await server.close()
        }
      },
      { max: 3 },
    )
    for (const o of observations) expect(o.seen).toHaveLength(1)
  })
})

describe('known limits (docs/instrumenting.md)', () => {
  it('work outside any scope is one operation: an unscoped job is charged with the client a concurrent unscoped job holds', async () => {
    // What poolScope around each job (above) avoids. Counting too much here is the price of never
    // missing a client that a helper hands back to unscoped code.
    await expectPattern(1, async ({ pool, llm }) => {
      const aHolds = signal()
      const bCalled = signal()
      let heldByA: pg.PoolClient | undefined
      const job = (fn: () => Promise<void>) => new Promise<void>((resolve, reject) => setTimeout(() => void fn().then(resolve, reject), 1))
      await Promise.all([
        job(async () => {
          heldByA = await acquireLater(pool)
          aHolds.open()
          await bCalled.opened
          heldByA.release()
        }),
        job(async () => {
          await aHolds.opened
          await llm('digest', [heldByA!]) // B holds nothing itself; the root operation does
          bCalled.open()
        }),
      ])
    })
  })
})
