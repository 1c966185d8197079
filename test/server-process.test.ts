import { describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { runCli, spawnCli, writeConfig } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { ADMIN_TOKEN, parseMetrics, valueOf } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

describe('warden serve (CLI subprocess)', () => {
  const t = useTestDatabase('serve_process', async (t) => {
    await seedConversationSessions(t, { orphans: 6, live: 3 })
    await migrate(t.db, 'warden')
  })

  it('starts, prints its URLs, serves, logs JSON without secrets, and exits 0 on SIGTERM', async () => {
    // The URL must carry a password for the redaction to be tested: a trust-auth server
    // (WARDEN_TEST_DATABASE_URL without one) accepts and ignores any.
    const url = new URL(t.url)
    if (!url.password) {
      url.username ||= 'postgres'
      url.password = 'not-a-real-secret-9f3k'
    }
    const password = url.password
    const config = writeConfig(`database:\n  url: ${url.toString()}\nserver:\n  collectInterval: 500ms\n`)
    const child = spawnCli(['serve', '--port', '0', '--config', config], { env: { WARDEN_ADMIN_TOKEN: ADMIN_TOKEN } })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    try {
      const url = await waitFor(
        async () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1],
        `the URL on stderr (stderr so far: ${stderr})`,
      )
      expect(stderr).toContain(`${url}/metrics`)
      expect(stderr).toContain('mutations POST')

      const health = await fetch(`${url}/healthz`)
      expect(health.status).toBe(200)
      const samples = await waitFor(async () => {
        const scraped = parseMetrics(await (await fetch(`${url}/metrics`)).text()).samples
        return valueOf(scraped, 'warden_sessions_orphaned', { group: 'support-agent' }) === 2 ? scraped : undefined
      }, 'the first collection')
      expect(valueOf(samples, 'warden_pg_up')).toBe(1)
      const sweep = await fetch(`${url}/api/sweeps`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      expect(sweep.status).toBe(200)
      // A client that puts the token in the query string: it must not reach the request log.
      const leaky = await fetch(`${url}/api/sweeps?token=${ADMIN_TOKEN}&access_token=${password}&page=2`, { method: 'POST' })
      expect(leaky.status).toBe(401)

      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
    const entries = stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(entries.map((entry) => entry.msg)).toEqual(
      expect.arrayContaining([
        'warden serve listening',
        'request',
        'shutting down: no new connections, finishing requests in flight',
        'stopped',
      ]),
    )
    expect(entries.find((entry) => entry.msg === 'warden serve listening')).toMatchObject({
      targets: [{ name: 'default', database: expect.stringContaining(':*****@'), tables: ['public.conversation_sessions'] }],
    })
    for (const output of [stdout, stderr]) {
      expect(output).not.toContain(ADMIN_TOKEN)
      expect(output).not.toContain(password)
    }
    const logged = entries.find((entry) => entry.msg === 'request' && String(entry.path).startsWith('/api/sweeps?'))
    expect(logged?.path).toBe('/api/sweeps?token=*****&access_token=*****&page=2')
  })

  it('refuses a bad port (64) and a mapping that does not match the table (78), naming the key', async () => {
    const port = await runCli(['serve', '--port', '70000', '--database-url', t.url])
    expect(port.code).toBe(64)
    expect(port.stderr).toContain('server.port = "70000" (from flag --port): expected an integer from 0 to 65535')
    const mapping = await runCli(['serve', '--port', '0', '--table', 'public.no_such_table', '--database-url', t.url])
    expect(mapping.code).toBe(78)
    expect(mapping.stderr).toContain('sessions.table = "public.no_such_table"')
  })
})
