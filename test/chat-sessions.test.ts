import { describe, expect, it } from 'vitest'
import {
  createSession,
  expectError,
  metricSum,
  rows,
  say,
  sayStreaming,
  streamThenDisconnect,
  uniqueId,
  useChatHarness,
} from './helpers/chat.js'
import { sleep, waitFor } from './helpers/wait.js'

const chat = useChatHarness('chat_sessions')

describe('chat sessions: ids', () => {
  it('a client-supplied id always wins, one {session: {id}} shape everywhere, duplicates 409, unknown ids 404', async () => {
    const h = await chat.start()
    const id = uniqueId('client-chosen')
    const created = await h.api.request('POST', 'sessions', { id, owner: 'user-1', agentRole: 'support-agent' })
    expect(created.status).toBe(201)
    expect(created.body.session).toMatchObject({
      id,
      owner: 'user-1',
      agentRole: 'support-agent',
      isActive: true,
      turnCount: 0,
      serverId: h.server.router.serverId,
    })
    const minted = await h.api.request('POST', 'sessions', {})
    expect(minted.body.session.id).toMatch(/^[0-9a-f-]{36}$/)

    expectError(await h.api.request('POST', 'sessions', { id }), 409, 'session_exists')
    const got = await h.api.request('GET', `sessions/${id}`)
    expect(got.body.session.id).toBe(id)
    const turn = await say(h, id, 'hello')
    const ended = await h.api.request('POST', `sessions/${id}/end`)
    const listed = await h.api.request('GET', `sessions/${id}/messages`)
    for (const reply of [created, got, turn, ended, listed]) expect(Object.keys(reply.body.session)).toContain('id')
    for (const reply of [created, got, turn, ended, listed]) expect(reply.body.session.id).toBe(id)

    const unknown = uniqueId('never-created')
    expectError(await h.api.request('GET', `sessions/${unknown}`), 404, 'session_not_found')
    expectError(await say(h, unknown, 'hello?'), 404, 'session_not_found')
    expectError(await h.api.request('POST', `sessions/${unknown}/end`), 404, 'session_not_found')
    // never a silent new session
    expect(await rows(h, 'SELECT 1 FROM warden.chat_sessions WHERE id = $1', [unknown])).toEqual([])
  })
})

describe('chat sessions: the message list', () => {
  it('GET /sessions/:id/messages lists the stored turns in order, as SQL has them; ?limit keeps the first n; unknown ids 404', async () => {
    const h = await chat.start()
    const id = await createSession(h)
    for (const text of ['first question', 'second question']) expect((await say(h, id, text)).status).toBe(200)
    const stored = await rows(h, `SELECT id::float8 AS id, role, content FROM warden.chat_messages WHERE session_id = $1 ORDER BY id`, [id])
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant'])
    expect(stored[0]!.content).toBe('first question')
    expect(stored[2]!.content).toBe('second question')

    const all = await h.api.request('GET', `sessions/${id}/messages`)
    expect(all.status, JSON.stringify(all.body)).toBe(200)
    expect(all.body.session).toMatchObject({ id, turnCount: 2 })
    expect(
      all.body.messages.map((m: { id: number; role: string; content: unknown }) => ({ id: m.id, role: m.role, content: m.content })),
    ).toEqual(stored)
    for (const m of all.body.messages) expect(Date.parse(m.createdAt)).not.toBeNaN()

    const two = await h.api.request('GET', `sessions/${id}/messages?limit=2`)
    expect(two.status).toBe(200)
    expect(two.body.messages.map((m: { id: number }) => m.id)).toEqual(stored.slice(0, 2).map((m) => m.id))
    const one = await h.api.request('GET', `sessions/${id}/messages?limit=1`)
    expect(one.body.messages.map((m: { id: number }) => m.id)).toEqual([stored[0]!.id])
    for (const bad of ['0', 'abc', '-1', '2.5', '10001', '']) {
      const refused = await h.api.request('GET', `sessions/${id}/messages?limit=${bad}`)
      expectError(refused, 400, 'invalid_request')
      expect(refused.body.error.message).toMatch(/^limit: expected a whole number from 1 to 10000/)
    }

    expectError(await h.api.request('GET', `sessions/${uniqueId('never-created')}/messages`), 404, 'session_not_found')
  })

  it("the chat server's own routes beside the chat path: /healthz answers ok, /metrics counts the turn it served", async () => {
    const h = await chat.start()
    const health = await fetch(`${h.server.url}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ ok: true })
    const before = await metricSum(h, 'gen_ai_client_operation_duration_seconds_count')
    expect((await say(h, await createSession(h), 'hello')).status).toBe(200)
    const metrics = await fetch(`${h.server.url}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await metricSum(h, 'gen_ai_client_operation_duration_seconds_count')).toBe(before + 1)
    expect((await fetch(`${h.server.url}/nope`)).status).toBe(404)
  })
})

describe('chat sessions: ending', () => {
  it('an explicit end closes the row (ended_at, duration, reason); an ended session refuses turns and a second end with 409', async () => {
    const h = await chat.start()
    const id = await createSession(h)
    await sleep(50)
    const ended = await h.api.request('POST', `sessions/${id}/end`)
    expect(ended.body.session).toMatchObject({ id, isActive: false, endReason: 'ended' })
    expect(ended.body.session.durationSeconds).toBeGreaterThan(0.04)
    expect(ended.body.session.endedAt).toEqual(expect.any(String))
    expectError(await say(h, id, 'still there?'), 409, 'session_ended')
    expectError(await sayStreaming(h, id, 'still there?'), 409, 'session_ended')
    expectError(await h.api.request('POST', `sessions/${id}/end`), 409, 'session_ended')
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(h.mock.stats().requests).toBe(0)
  })

  it('a streaming client that disconnects mid-stream closes its session (disconnect) and nothing of the turn is written', async () => {
    const h = await chat.start({ mock: { ttftMs: 20, outputTokens: 60, tokensPerSecond: 20 } })
    const id = await createSession(h)
    await streamThenDisconnect(h, id, 'tell me a long story')
    const [session] = await waitFor(async () => {
      const found = await rows(
        h,
        'SELECT is_active, end_reason, duration_seconds, ended_at FROM warden.chat_sessions WHERE id = $1 AND NOT is_active',
        [id],
      )
      return found.length ? found : undefined
    }, 'the session closed as disconnect')
    expect(session).toMatchObject({ is_active: false, end_reason: 'disconnect', ended_at: expect.any(Date) })
    expect(session!.duration_seconds).toBeGreaterThan(0)
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await metricSum(h, 'warden_sessions_closed_total', { reason: 'disconnect' })).toBe(1)
    await waitFor(async () => h.mock.stats().inFlight === 0, 'the mock to see the LLM call cancelled')
  })

  it("shutdown closes the open sessions this server opened (shutdown), leaves ended ones and other servers' sessions alone", async () => {
    const h = await chat.start()
    const mine = [await createSession(h), await createSession(h), await createSession(h)]
    await h.api.request('POST', `sessions/${mine[2]}/end`)
    const other = uniqueId('other-server')
    await h.exec(`INSERT INTO warden.chat_sessions (id, server_id) VALUES ($1, 'another-host:1')`, [other])
    const { closedSessions } = await h.close()
    expect(closedSessions).toBe(2)
    const states = await rows(
      h,
      'SELECT id, is_active, end_reason, duration_seconds IS NOT NULL AS has_duration FROM warden.chat_sessions WHERE id = ANY($1) ORDER BY id',
      [[...mine, other]],
    )
    const byId = Object.fromEntries(states.map((s) => [s.id, s]))
    expect(byId[mine[0]!]).toMatchObject({ is_active: false, end_reason: 'shutdown', has_duration: true })
    expect(byId[mine[1]!]).toMatchObject({ is_active: false, end_reason: 'shutdown' })
    expect(byId[mine[2]!]).toMatchObject({ end_reason: 'ended' })
    expect(byId[other]).toMatchObject({ is_active: true, end_reason: null })
    expect(await metricSum(h, 'warden_sessions_closed_total', { reason: 'shutdown' })).toBe(2)
  })

  it('a conversation continues on a new server (new router, pool, registry) after a restart that keeps sessions', async () => {
    const a = await chat.start({ mock: { outputTokens: 5 } })
    const id = await createSession(a, { id: uniqueId('survivor') })
    expect((await say(a, id, 'remember this')).status).toBe(200)
    await a.close({ closeSessions: false })
    const b = await chat.start({ mock: { outputTokens: 5 } })
    const next = await say(b, id, 'what did I say')
    expect(next.status, JSON.stringify(next.body)).toBe(200)
    expect(next.body.usage.inputTokens).toBe(2 + 5 + 4)
    expect(next.body.session).toMatchObject({ id, turnCount: 2, serverId: a.server.router.serverId })
  })
})
