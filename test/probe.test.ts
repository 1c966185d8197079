import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db/database.js'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { probeAcquire } from '../src/probes/acquire-probe.js'
import { probeServer } from '../src/probes/server-probe.js'
import { parseJson, runCli, spawnCli } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { sleep, waitFor } from './helpers/wait.js'

/** The slow "LLM call" the misbehaving app makes while it holds its transaction. */
const LLM_LATENCY_MS = 1500
const HOLD_QUERY = `SELECT id, body FROM chat_messages WHERE session_id = 'hold-app-session-7' /* loading the history before calling the model, a comment long enough to need truncating */ ORDER BY id`

const urlAs = (url: string, user: string, password: string) => {
  const parsed = new URL(url)
  parsed.username = user
  parsed.password = password
  return parsed.toString()
}

describe('pool probe (real PostgreSQL)', () => {
  let t: TestDatabase
  let probeDb: Database
  const apps: Array<{ client: pg.Client; pid: number }> = []
  const roles: string[] = []

  /** A client of the "application" under test, recognisable by its application_name. */
  async function app(name: string, url = t.url) {
    const client = new pg.Client({ connectionString: url, application_name: name })
    client.on('error', () => undefined)
    await client.connect()
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
    apps.push({ client, pid })
    return { client, pid }
  }

  async function createRole(label: string, extra = ''): Promise<{ name: string; url: string }> {
    const name = `warden_t_${label}_${randomBytes(3).toString('hex')}`
    // A password, because the embedded server authenticates with one; trust servers ignore it.
    await t.exec(`CREATE ROLE ${name} LOGIN PASSWORD 'x' ${extra}`)
    roles.push(name)
    return { name, url: urlAs(t.url, name, 'x') }
  }

  const backendGone = (pids: number[]) => async () => {
    const { rows } = await t.exec('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids])
    return rows[0].n === 0 ? true : undefined
  }

  beforeAll(async () => {
    t = await createTestDatabase('probe')
    await t.exec(`CREATE TABLE chat_messages (id serial PRIMARY KEY, session_id text NOT NULL, body text NOT NULL)`)
    await t.exec(
      `INSERT INTO chat_messages (session_id, body) SELECT 'hold-app-session-' || (i % 10), 'message ' || i FROM generate_series(1, 50) i`,
    )
    probeDb = new Database({ url: t.url, applicationName: 'warden-probe-test', connectTimeout: 5, statementTimeout: 30, poolMax: 1 })
  })

  afterEach(async () => {
    const pids = apps.map((a) => a.pid)
    await Promise.all(apps.splice(0).map((a) => a.client.end().catch(() => undefined)))
    // A closed client's backend lingers for a moment; later counts must not see it.
    await waitFor(backendGone(pids), 'closed test clients to leave pg_stat_activity')
  })

  afterAll(async () => {
    await probeDb?.close()
    // Roles are cluster-wide: drop them, or every run leaves some behind on a shared server.
    for (const role of roles) await t.exec(`DROP ROLE IF EXISTS ${role}`)
    await t?.drop()
  })

  it('names the app holding a transaction across a slow LLM call: transaction age, idle age and last query', async () => {
    const holder = await app('hold-app')
    await holder.client.query('BEGIN')
    await holder.client.query(HOLD_QUERY)
    const heldSince = Date.now()
    await sleep(LLM_LATENCY_MS)
    const waited = (Date.now() - heldSince) / 1000

    const probe = await probeServer(probeDb, { longTransactionSeconds: 1 })
    const held = probe.idleInTransaction.find((r) => r.pid === holder.pid)
    expect(held).toMatchObject({
      applicationName: 'hold-app',
      state: 'idle in transaction',
      aborted: false,
      database: t.name,
      queryTruncated: false,
    })
    expect(held!.transactionSeconds).toBeGreaterThanOrEqual(waited)
    expect(held!.idleSeconds).toBeGreaterThanOrEqual(waited)
    expect(held!.query).toBe(HOLD_QUERY)
    expect(probe.longTransactions.map((r) => r.pid)).toContain(holder.pid)
    expect(probe.connections.groups).toContainEqual(
      expect.objectContaining({ applicationName: 'hold-app', state: 'idle in transaction', count: 1, database: t.name }),
    )

    // The probe's own backend is in none of it.
    expect(probe.connections.groups.some((g) => g.applicationName === 'warden-probe-test')).toBe(false)
    expect([...probe.idleInTransaction, ...probe.longTransactions].some((r) => r.pid === probe.probe.pid)).toBe(false)

    const short = await probeServer(probeDb, { queryLength: 20 })
    const clipped = short.idleInTransaction.find((r) => r.pid === holder.pid)
    expect(clipped).toMatchObject({ query: HOLD_QUERY.slice(0, 20), queryTruncated: true })
    // Under the default one-minute threshold it is idle in transaction, not yet long-running.
    expect(short.longTransactions.some((r) => r.pid === holder.pid)).toBe(false)
  })

  it('marks a transaction whose statement failed as aborted', async () => {
    const broken = await app('abort-app')
    await broken.client.query('BEGIN')
    await expect(broken.client.query('SELECT 1 / 0')).rejects.toThrow(/division by zero/)
    // pg rejects on the ErrorResponse, before the backend reports its new state: wait for it.
    await waitFor(async () => {
      const { rows } = await t.exec(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction (aborted)'`, [
        broken.pid,
      ])
      return rows.length ? true : undefined
    }, 'the failed transaction to show as aborted')
    const probe = await probeServer(probeDb)
    expect(probe.idleInTransaction.find((r) => r.pid === broken.pid)).toMatchObject({
      state: 'idle in transaction (aborted)',
      aborted: true,
      query: 'SELECT 1 / 0',
    })
  })

  it('reports a lock wait with the backend that blocks it', async () => {
    const holder = await app('lock-holder')
    await holder.client.query('BEGIN')
    await holder.client.query(`UPDATE chat_messages SET body = 'edited by holder' WHERE id = 1`)
    const waiter = await app('lock-waiter')
    const pending = waiter.client.query(`UPDATE chat_messages SET body = 'edited by waiter' WHERE id = 1`)
    await waitFor(async () => {
      const { rows } = await t.exec(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [waiter.pid])
      return rows.length ? true : undefined
    }, 'the waiter to wait on the row lock')

    const probe = await probeServer(probeDb)
    const wait = probe.lockWaits.find((w) => w.pid === waiter.pid)
    expect(wait).toMatchObject({ applicationName: 'lock-waiter', query: `UPDATE chat_messages SET body = 'edited by waiter' WHERE id = 1` })
    expect(wait!.blockedBy).toEqual([
      expect.objectContaining({
        pid: holder.pid,
        applicationName: 'lock-holder',
        state: 'idle in transaction',
        query: `UPDATE chat_messages SET body = 'edited by holder' WHERE id = 1`,
      }),
    ])
    await holder.client.query('ROLLBACK')
    await pending
    const after = await probeServer(probeDb)
    expect(after.lockWaits.some((w) => w.pid === waiter.pid)).toBe(false)
  })

  it('computes headroom from max_connections minus both reserves, and counts connections as pg_stat_activity does', async () => {
    await Promise.all([1, 2, 3].map(() => app('filler-app')))
    const probe = await probeServer(probeDb)
    const { rows } = await t.exec(
      `SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS su,
              COALESCE(current_setting('reserved_connections', true)::int, 0) AS reserved, current_setting('server_version_num')::int AS version`,
    )
    const direct = rows[0]
    const c = probe.connections
    expect(c).toMatchObject({
      maxConnections: direct.max,
      superuserReserved: direct.su,
      reserved: direct.reserved,
      available: direct.max - direct.su - direct.reserved,
    })
    expect(c.used).toBe(1 + c.groups.reduce((sum, g) => sum + g.count, 0))
    expect(c.headroom).toBe(c.available - c.used)
    // Connections of this test's database that nothing else opens or closes: an exact match.
    const mine = `datname = $1 AND backend_type = 'client backend' AND application_name NOT IN ('warden-test', 'warden-probe-test')`
    const counted = await t.exec(`SELECT application_name AS app, count(*)::int AS n FROM pg_stat_activity WHERE ${mine} GROUP BY 1`, [
      t.name,
    ])
    const probed = c.groups.filter((g) => g.database === t.name && g.applicationName !== 'warden-test')
    expect(Object.fromEntries(probed.map((g) => [g.applicationName, g.count]))).toEqual(
      Object.fromEntries(counted.rows.map((r) => [r.app, r.n])),
    )
    expect(counted.rows).toEqual([{ app: 'filler-app', n: 3 }])

    expect(probe.server.versionNum).toBe(direct.version)
    expect(probe.timeouts.idleSessionTimeout.available).toBe(direct.version >= 140000)
    expect(probe.timeouts.transactionTimeout.available).toBe(direct.version >= 170000)
    expect(probe.timeouts.idleInTransactionSessionTimeout).toMatchObject({ available: true, ms: 0 })
    // Warden's own connection sets statement_timeout (30 s here), and the probe says it was the client.
    expect(probe.timeouts.statementTimeout).toMatchObject({ ms: 30_000, source: 'client' })
  })

  it('reports per-role timeout overrides, which is what an application role really gets', async () => {
    const role = await createRole('timeouts')
    await t.exec(`ALTER ROLE ${role.name} SET idle_in_transaction_session_timeout = '45s'`)
    const probe = await probeServer(probeDb)
    expect(probe.timeoutOverrides).toContainEqual({
      role: role.name,
      database: null,
      name: 'idle_in_transaction_session_timeout',
      value: '45s',
    })
  })

  it("says so when the role cannot see other roles' sessions, and sees them once granted pg_read_all_stats", async () => {
    const role = await createRole('plain')
    const holder = await app('hold-app')
    await holder.client.query('BEGIN')
    await holder.client.query(HOLD_QUERY)
    const plainDb = new Database({ url: role.url, applicationName: 'warden-plain', connectTimeout: 5, statementTimeout: 30, poolMax: 1 })
    try {
      const hidden = await probeServer(plainDb)
      expect(hidden.probe).toMatchObject({ user: role.name, canReadAllStats: false })
      expect(hidden.queryTextHidden).toBe(true)
      expect(hidden.hiddenBackends).toBeGreaterThan(0)
      expect(hidden.warnings.join('\n')).toMatch(new RegExp(`GRANT pg_read_all_stats TO ${role.name}`))
      // application_name is visible to every role; state and query are not.
      expect(hidden.connections.groups).toContainEqual(expect.objectContaining({ applicationName: 'hold-app', state: 'hidden' }))
      expect(hidden.idleInTransaction.some((r) => r.pid === holder.pid)).toBe(false)

      await t.exec(`GRANT pg_read_all_stats TO ${role.name}`)
      const seen = await probeServer(plainDb)
      expect(seen.probe.canReadAllStats).toBe(true)
      expect(seen.queryTextHidden).toBe(false)
      expect(seen.idleInTransaction.find((r) => r.pid === holder.pid)).toMatchObject({ applicationName: 'hold-app', query: HOLD_QUERY })
    } finally {
      await plainDb.close()
    }
  })

  describe('timed acquire', () => {
    it('opens a fresh session and times connect and SELECT 1', async () => {
      const acquire = await probeAcquire(t.url)
      expect(acquire).toMatchObject({ outcome: 'ok', phase: 'query', code: null, message: null, timeoutMs: 5000 })
      expect(acquire.connectMs).toBeGreaterThan(0)
      expect(acquire.queryMs).toBeGreaterThan(0)
      // each figure is rounded to 0.1 ms on its own, so the parts may add up to 0.1 ms more
      expect(acquire.totalMs).toBeGreaterThanOrEqual(acquire.connectMs! + acquire.queryMs! - 0.1 - 1e-9)
    })

    it('reports too_many_clients (53300) when the role has no connection slot left, and ok once one is free', async () => {
      const role = await createRole('limited', 'CONNECTION LIMIT 1')
      const occupant = await app('occupant', role.url)
      const full = await probeAcquire(role.url)
      expect(full).toMatchObject({ outcome: 'too_many_clients', code: '53300', phase: 'connect', connectMs: null, queryMs: null })
      expect(full.message).toMatch(/too many connections for role/)

      await occupant.client.end()
      await waitFor(backendGone([occupant.pid]), 'the occupant to disconnect')
      expect((await probeAcquire(role.url)).outcome).toBe('ok')
    })

    it('reports auth_failed for a login the server rejects', async () => {
      const acquire = await probeAcquire(urlAs(t.url, `warden_t_nobody_${randomBytes(3).toString('hex')}`, 'wrong'))
      expect(acquire.outcome).toBe('auth_failed')
      expect(acquire.code).toMatch(/^28/)
    })

    it('reports refused when nothing listens', async () => {
      const acquire = await probeAcquire(`postgres://postgres@127.0.0.1:${await freePort()}/postgres`)
      expect(acquire).toMatchObject({ outcome: 'refused', code: 'ECONNREFUSED', phase: 'connect' })
    })

    it('reports timeout at the deadline when the server accepts but never answers', async () => {
      const sockets: Socket[] = []
      const closed = new Set<Socket>()
      const silent = createServer((socket) => {
        sockets.push(socket)
        socket.on('close', () => closed.add(socket))
        socket.resume() // read (and ignore) the startup packet, so the client's FIN is noticed
      })
      silent.listen(0, '127.0.0.1')
      await once(silent, 'listening')
      const port = (silent.address() as { port: number }).port
      try {
        const acquire = await probeAcquire(`postgres://postgres@127.0.0.1:${port}/postgres`, { timeoutMs: 300 })
        expect(acquire).toMatchObject({ outcome: 'timeout', phase: 'connect', connectMs: null, timeoutMs: 300 })
        // Timers may fire a tick early; the point is that it waited for the deadline, not how long after.
        expect(acquire.totalMs).toBeGreaterThanOrEqual(290)
        // The probe must not leave its half-open socket behind: a hung server never closes it for us.
        expect(sockets).toHaveLength(1)
        await waitFor(async () => (closed.size === 1 ? true : undefined), 'the probe to close its socket', 10_000)
      } finally {
        for (const socket of sockets) socket.destroy()
        silent.close()
      }
    })
  })

  describe('CLI', () => {
    it('pool probe --json names the holding app; human output fits 80 columns', async () => {
      const holder = await app('hold-app')
      await holder.client.query('BEGIN')
      await holder.client.query(HOLD_QUERY)
      const result = await runCli(['pool', 'probe', '--json', '--long-transaction', '1s', '--database-url', t.url])
      expect(result.code, result.stderr).toBe(0)
      const json = parseJson<{
        server: { idleInTransaction: Array<{ pid: number; applicationName: string; query: string }> }
        acquire: { outcome: string }
        pgbouncer: null
      }>(result)
      expect(json.server.idleInTransaction.find((r) => r.pid === holder.pid)).toMatchObject({
        applicationName: 'hold-app',
        query: HOLD_QUERY,
      })
      expect(json.acquire.outcome).toBe('ok')
      expect(json.pgbouncer).toBeNull()

      const human = await runCli(['pool', 'probe', '--database-url', t.url])
      expect(human.code, human.stderr).toBe(0)
      expect(human.stdout).toMatch(new RegExp(`^\\s*${holder.pid}\\s+hold-app\\s+.*SELECT id, body`, 'm'))
      expect(human.stdout).toMatch(/^acquire {2}ok: session in /m)
      const wide = human.stdout.split('\n').filter((line) => line.length > 80)
      expect(wide).toEqual([])
    })

    it('pool watch --count 2 prints two snapshots and exits 0; --json prints one object per line', async () => {
      const result = await runCli(['pool', 'watch', '--count', '2', '--interval', '200ms', '--database-url', t.url])
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout.match(/^=== snapshot \d+ /gm)).toEqual(['=== snapshot 1 ', '=== snapshot 2 '])
      expect(result.stdout.match(/^slots /gm)).toHaveLength(2)

      const json = await runCli(['pool', 'watch', '--count', '2', '--interval', '200ms', '--json', '--database-url', t.url])
      expect(json.code, json.stderr).toBe(0)
      const lines = json.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line))
      expect(lines.map((l) => l.snapshot)).toEqual([1, 2])
      expect(lines[1].server.connections.maxConnections).toBeGreaterThan(0)
    })

    it('pool watch stops cleanly with exit 0 on SIGTERM and on SIGINT', async () => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const child = spawnCli(['pool', 'watch', '--interval', '100ms', '--database-url', t.url])
        let stdout = ''
        let stderr = ''
        child.stdout!.on('data', (chunk) => (stdout += chunk))
        child.stderr!.on('data', (chunk) => (stderr += chunk))
        const exited = once(child, 'close')
        await waitFor(async () => (stdout.includes('=== snapshot 1 ') ? true : undefined), 'the first snapshot').catch((error) => {
          child.kill('SIGKILL')
          throw new Error(`${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`)
        })
        child.kill(signal)
        const [code, killedBy] = await exited
        expect({ signal, code, killedBy }).toEqual({ signal, code: 0, killedBy: null })
      }
    })

    it('exits 3 with a clear message when the database cannot be reached', async () => {
      const url = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`
      const result = await runCli(['pool', 'probe', '--database-url', url])
      expect(result.code).toBe(3)
      expect(result.stderr).toMatch(/cannot connect to PostgreSQL at .*ECONNREFUSED/)
      const json = await runCli(['pool', 'watch', '--count', '1', '--json', '--database-url', url])
      expect(json.code).toBe(3)
      expect(parseJson(json)).toMatchObject({ error: { kind: 'unavailable', exitCode: 3 } })
    })

    it('rejects a malformed duration with exit 64', async () => {
      const result = await runCli(['pool', 'probe', '--long-transaction', 'soon', '--database-url', t.url])
      expect(result.code).toBe(64)
      expect(result.stderr).toMatch(/--long-transaction "soon": expected a positive duration/)
    })
  })
})
