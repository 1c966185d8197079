import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { probePgBouncer, type PgBouncerPool } from '../src/probes/pgbouncer-probe.js'
import { parseJson, runCli } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { startPgBouncer, type PgBouncer } from './helpers/pgbouncer.js'
import { sleep, waitFor } from './helpers/wait.js'

const POOL_SIZE = 2

describe('PgBouncer probe (real pgbouncer in front of real PostgreSQL)', () => {
  let t: TestDatabase
  let bouncer: PgBouncer
  const clients: pg.Client[] = []

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: bouncer.url(t.name) })
    c.on('error', () => undefined)
    await c.connect()
    clients.push(c)
    return c
  }

  /**
   * Fills the pool: two clients each hold a server connection inside an open transaction
   * (transaction mode pins a server only for the transaction), then a third has to queue.
   */
  async function makeOneWait() {
    const holders = [await client(), await client()]
    for (const holder of holders) {
      await holder.query('BEGIN')
      await holder.query('SELECT pg_backend_pid()')
    }
    const waiter = await client()
    const pending = waiter.query('SELECT 42 AS answer')
    // If the test fails before the holders commit, afterEach ends this client mid-query.
    pending.catch(() => undefined)
    const pool = await waitFor(async () => {
      const probe = await probePgBouncer(bouncer.adminUrl)
      const row = probe.pools.find((p) => p.database === t.name)
      return row && row.clWaiting >= 1 ? row : undefined
    }, 'a client to queue in PgBouncer')
    return { holders, pending, pool }
  }

  beforeAll(async () => {
    t = await createTestDatabase('bouncer')
    bouncer = await startPgBouncer({ target: t.url, poolSize: POOL_SIZE })
  })

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)))
  })

  afterAll(async () => {
    await bouncer?.stop()
    await t?.drop()
  })

  it('reports queued clients and a maxwait that includes maxwait_us', async () => {
    const { holders, pending } = await makeOneWait()
    // Past one second, so maxwait (whole seconds) and maxwait_us (the rest) are both non-zero.
    await sleep(1200)
    const probe = await probePgBouncer(bouncer.adminUrl)
    expect(probe).toMatchObject({ reachable: true, error: null })
    expect(probe.version).toMatch(/PgBouncer \d+\.\d+/)
    const pool = probe.pools.find((p) => p.database === t.name)
    expect(pool).toMatchObject<Partial<PgBouncerPool>>({ user: 'postgres', poolMode: 'transaction', clWaiting: 1, svActive: POOL_SIZE })
    expect(pool!.clActive).toBeGreaterThanOrEqual(POOL_SIZE)
    expect(pool!.maxwaitSeconds).toBeGreaterThanOrEqual(1.2)
    // Whole seconds alone would be an integer: the microseconds must be in it.
    expect(pool!.maxwaitSeconds % 1).toBeGreaterThan(0)
    // The console's own pseudo-database is not a pool anyone waits on.
    expect(probe.pools.some((p) => p.database === 'pgbouncer')).toBe(false)

    for (const holder of holders) await holder.query('COMMIT')
    expect((await pending).rows).toEqual([{ answer: 42 }])
    const after = await probePgBouncer(bouncer.adminUrl)
    expect(after.pools.find((p) => p.database === t.name)).toMatchObject({ clWaiting: 0, maxwaitSeconds: 0 })
    const stats = after.stats.find((s) => s.database === t.name)
    expect(stats!.totalXactCount).toBeGreaterThanOrEqual(3)
    expect(stats!.totalWaitTimeSeconds).toBeGreaterThanOrEqual(1.2)
  })

  it('warden pool probe --pgbouncer shows the queue in JSON and in a table that fits 80 columns', async () => {
    const { holders, pending } = await makeOneWait()
    const json = await runCli(['pool', 'probe', '--json', '--database-url', t.url, '--pgbouncer', bouncer.adminUrl])
    expect(json.code, json.stderr).toBe(0)
    const out = parseJson<{ pgbouncer: { reachable: boolean; pools: PgBouncerPool[] } }>(json)
    expect(out.pgbouncer.reachable).toBe(true)
    expect(out.pgbouncer.pools.find((p) => p.database === t.name)).toMatchObject({ clWaiting: 1, svActive: POOL_SIZE })

    const human = await runCli(['pool', 'probe', '--database-url', t.url, '--pgbouncer', bouncer.adminUrl])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/^pgbouncer {2}PgBouncer /m)
    expect(human.stdout).toMatch(new RegExp(`^${t.name}\\s+postgres\\s+\\d+\\s+1\\s+2\\s+`, 'm'))
    expect(human.stdout.split('\n').filter((line) => line.length > 80)).toEqual([])

    for (const holder of holders) await holder.query('COMMIT')
    await pending
  })

  it('an unreachable PgBouncer is a finding with a clear message, and the probe still exits 0', async () => {
    const url = `postgres://postgres@127.0.0.1:${await freePort()}/pgbouncer`
    const probe = await probePgBouncer(url)
    expect(probe).toMatchObject({ reachable: false, pools: [], stats: [] })
    expect(probe.error).toMatch(/cannot read PgBouncer admin console at .*ECONNREFUSED.*is pgbouncer running/)

    const result = await runCli(['pool', 'probe', '--json', '--database-url', t.url, '--pgbouncer', url])
    expect(result.code, result.stderr).toBe(0)
    expect(parseJson<{ pgbouncer: { reachable: boolean } }>(result).pgbouncer.reachable).toBe(false)
  })

  it('a URL that is not an admin console, or a console that never answers, is a finding too', async () => {
    const notConsole = await probePgBouncer(t.url)
    expect(notConsole.reachable).toBe(false)
    expect(notConsole.error).toMatch(/is this a PgBouncer admin console/)

    const sockets: Socket[] = []
    const silent = createServer((socket) => sockets.push(socket.resume()))
    silent.listen(0, '127.0.0.1')
    await once(silent, 'listening')
    try {
      const hung = await probePgBouncer(`postgres://postgres@127.0.0.1:${(silent.address() as { port: number }).port}/pgbouncer`, {
        timeoutMs: 300,
      })
      expect(hung).toMatchObject({ reachable: false })
      expect(hung.error).toMatch(/did not answer within 300 ms/)
    } finally {
      for (const socket of sockets) socket.destroy()
      silent.close()
    }
  })
})
