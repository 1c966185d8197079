import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { spawnCli } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { parseMetrics, valueOf } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

describe('warden serve --chat (CLI subprocess)', () => {
  const t = useTestDatabase('serve_chat', async (t) => {
    await seedConversationSessions(t, { orphans: 2, live: 2 })
    await migrate(t.db, 'warden')
  })

  it('mounts the chat path beside the admin API, shares the registry, and closes its sessions on SIGTERM', async () => {
    const child = spawnCli([
      'serve',
      '--chat',
      '--mock-latency',
      '50ms',
      '--port',
      '0',
      '--no-scheduler',
      '--database-url',
      t.url,
      '--log-format',
      'json',
    ])
    let stderr = ''
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    child.stdout!.resume()
    const exited = once(child, 'exit')
    try {
      const url = await waitFor(async () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1], `the URL (stderr: ${stderr})`)
      expect(stderr).toMatch(/chat {6}http:\/\/127\.0\.0\.1:\d+\/chat\/sessions \(LLM: mock http/)
      const created = await fetch(`${url}/chat/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'client-chosen-1' }),
      })
      expect(created.status).toBe(201)
      expect(((await created.json()) as { session: { id: string } }).session.id).toBe('client-chosen-1')
      const reply = await fetch(`${url}/chat/sessions/client-chosen-1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello' }),
      })
      expect(reply.status).toBe(200)
      const { samples, types } = parseMetrics(await (await fetch(`${url}/metrics`)).text())
      expect(samples.some((s) => s.name === 'gen_ai_client_operation_duration_seconds_count' && s.value >= 1)).toBe(true)
      // the chat pool served the turn, and its held-during-LLM counter is registered with no call counted
      expect(valueOf(samples, 'db_client_connection_use_time_seconds_count', { db_client_connection_pool_name: 'chat' })).toBeGreaterThan(0)
      expect(types.get('warden_db_connection_held_during_llm_call_total')).toBe('counter')
      expect(samples.filter((s) => s.name === 'warden_db_connection_held_during_llm_call_total' && s.value > 0)).toEqual([])
      expect(samples.some((s) => s.name === 'warden_sessions_active')).toBe(true)

      child.kill('SIGTERM')
      const [code] = await exited
      expect(code).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
    const { rows } = await t.exec(`SELECT is_active, end_reason, turn_count FROM warden.chat_sessions WHERE id = 'client-chosen-1'`)
    expect(rows).toEqual([{ is_active: false, end_reason: 'shutdown', turn_count: 1 }])
    const { rows: cost } = await t.exec(
      `SELECT count(*)::int AS n FROM warden.llm_requests WHERE session_id = 'client-chosen-1' AND status = 'ok'`,
    )
    expect(cost[0].n).toBe(1)
  })
})
