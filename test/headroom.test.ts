import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runChecks } from '../src/checks/run.js'
import { loadConfig } from '../src/core/config.js'
import { Database } from '../src/db/database.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { probeAcquire } from '../src/probes/acquire-probe.js'
import { writeConfig } from './helpers/cli.js'

/**
 * Filling a shared server close to max_connections would starve the other test files, so this
 * file starts its own small server: max_connections 20, 3 reserved for superusers, 17 usable.
 */
describe('connection headroom on a server filled close to max_connections', () => {
  let server: EmbeddedPostgres
  const clients: pg.Client[] = []
  beforeAll(async () => {
    server = await startEmbeddedPostgres({ settings: { max_connections: '20', superuser_reserved_connections: '3' } })
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
    await server?.stop()
  })

  const fill = async (total: number) => {
    while (clients.length < total) {
      const client = new pg.Client({ connectionString: server.url, application_name: 'filler' })
      await client.connect()
      clients.push(client)
    }
  }

  it('warns near the cliff, is critical at it, and the timed acquire reports "too many clients" as a finding', async () => {
    const { config } = loadConfig({
      env: {},
      configPath: writeConfig(`database: { url: "${server.url}", poolMax: 1 }\nchecks:\n  connectionHeadroom: { warn: 80, crit: 95 }\n`),
    })
    const db = new Database({ ...config.database })
    try {
      await db.ping() // Warden's own connection: 1 of 17
      await fill(13) // 14 of 17 = 82 %
      const warn = await runChecks(db, config, { only: ['connection-headroom'] })
      expect(warn.checks[0]).toMatchObject({ status: 'warn' })
      expect(warn.checks[0]!.message).toMatch(/^14 of 17 usable connections in use \(82%; max_connections 20, 3 reserved\), 3 left/)

      await fill(16) // 17 of 17: the next ordinary client is refused
      const crit = await runChecks(db, config, { only: ['connection-headroom'] })
      expect(crit.checks[0]).toMatchObject({ status: 'crit' })
      expect(crit.exitCode).toBe(2)
      // An ordinary role gets no slot now (the superuser would still get a reserved one).
      const refusedUrl = new URL(server.url)
      await db.query({ name: 'test.role', text: `CREATE ROLE app_user LOGIN PASSWORD 'app'`, values: [] })
      refusedUrl.username = 'app_user'
      refusedUrl.password = 'app'
      const refused = await probeAcquire(refusedUrl.toString(), { timeoutMs: 3000 })
      expect(refused).toMatchObject({ outcome: 'too_many_clients', code: '53300' })
    } finally {
      await db.close()
    }
  })
})
