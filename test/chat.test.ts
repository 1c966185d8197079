import { setTimeout as sleep } from 'node:timers/promises'
import http from 'node:http'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startChatServer, type ChatServer, type ChatServerOptions } from '../src/chat/server.js'
import { createChatRouter } from '../src/chat/router.js'
import { anthropicFactory } from '../src/chat/llm.js'
import { GEN_AI_DURATION_BUCKETS, GEN_AI_TOKEN_BUCKETS } from '../src/chat/metrics.js'
import { migrate } from '../src/db/migrate.js'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { startMockLlm, type MockLlmOptions, type MockLlmServer } from '../src/llm/mock-server.js'
import { ChatClient, parseSse, type ChatReply } from '../src/loadtest/http-client.js'
import { counterValue as counter } from '../src/loadtest/stats.js'
import { describePool } from '../src/pool/instrumented-pool.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'

const MODEL = 'claude-mock-1'

interface Harness {
  server: ChatServer
  mock: MockLlmServer
  api: ChatClient
  registry: Registry
}

let t: TestDatabase
const running: Harness[] = []

beforeAll(async () => {
  t = await createTestDatabase('chat')
  await migrate(t.db, 'warden')
})
afterAll(async () => {
  await t.drop()
})
afterEach(async () => {
  for (const h of running.splice(0)) {
    h.api.close()
    await h.server.close({ graceMs: 0 })
    await h.mock.close()
  }
})

async function start(
  opts: { mock?: MockLlmOptions; server?: Partial<ChatServerOptions>; llmUrl?: string; apiKey?: string } = {},
): Promise<Harness> {
  const mock = await startMockLlm(opts.mock ?? {})
  const registry = opts.server?.registry ?? new Registry()
  const server = await startChatServer({
    databaseUrl: t.url,
    llm: { baseURL: opts.llmUrl ?? mock.url, apiKey: opts.apiKey ?? 'test-key', maxRetries: 0 },
    model: MODEL,
    poolMax: 6,
    registry,
    ...opts.server,
  })
  const h = { server, mock, registry, api: new ChatClient(server.chatUrl, { maxSockets: 16, timeoutMs: 20_000 }) }
  running.push(h)
  return h
}

const uniqueId = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`

async function createSession(h: Harness, body: Record<string, unknown> = {}): Promise<string> {
  const reply = await h.api.request('POST', 'sessions', body)
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return reply.body.session.id as string
}

const say = (h: Harness, id: string, message: string) => h.api.request('POST', `sessions/${encodeURIComponent(id)}/messages`, { message })
const sayStreaming = (h: Harness, id: string, message: string) =>
  h.api.request('POST', `sessions/${encodeURIComponent(id)}/messages/stream`, { message }, true)

const heldDuringLlm = (h: Harness) => counter(h.registry, 'warden_db_connection_held_during_llm_call_total', { pool_name: 'chat' })

async function rows(text: string, values: unknown[] = []) {
  return (await t.exec(text, values)).rows
}

const expectError = (reply: ChatReply, status: number, code: string) => {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status)
  expect(reply.body).toEqual({ error: { code, message: expect.any(String) } })
}

async function waitFor<T>(probe: () => Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > until) throw new Error('condition not met in time')
    await sleep(25)
  }
}

describe('chat path: sessions and ids', () => {
  it('a client-supplied id always wins, one {session: {id}} shape everywhere, duplicates 409, unknown ids 404', async () => {
    const h = await start()
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
    expect(await rows('SELECT 1 FROM warden.chat_sessions WHERE id = $1', [unknown])).toEqual([])
  })

  it('an explicit end closes the row (ended_at, duration, reason); an ended session refuses turns and a second end with 409', async () => {
    const h = await start()
    const id = await createSession(h)
    await sleep(50)
    const ended = await h.api.request('POST', `sessions/${id}/end`)
    expect(ended.body.session).toMatchObject({ id, isActive: false, endReason: 'ended' })
    expect(ended.body.session.durationSeconds).toBeGreaterThan(0.04)
    expect(ended.body.session.endedAt).toEqual(expect.any(String))
    expectError(await say(h, id, 'still there?'), 409, 'session_ended')
    expectError(await sayStreaming(h, id, 'still there?'), 409, 'session_ended')
    expectError(await h.api.request('POST', `sessions/${id}/end`), 409, 'session_ended')
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
  })
})

describe('chat path: release before call', () => {
  it('a turn stores user + assistant messages, one ok cost row and the counters, with no connection held during the LLM call', async () => {
    const h = await start({ mock: { latencyMs: 150, outputTokens: 9 } })
    const id = await createSession(h)
    const observed: number[] = []
    const sampling = setInterval(() => observed.push(describePool(h.server.pool).used), 10)
    const first = await say(h, id, 'first question')
    clearInterval(sampling)
    expect(first.status, JSON.stringify(first.body)).toBe(200)
    expect(first.body.reply).toMatchObject({ role: 'assistant', stopReason: 'end_turn' })
    expect(first.body.reply.text.split(' ')).toHaveLength(9)
    expect(first.body.usage).toEqual({ inputTokens: 2, outputTokens: 9, llmCalls: 1 })
    expect(first.body.session).toMatchObject({ id, turnCount: 1, inputTokens: 2, outputTokens: 9 })
    // 150 ms of LLM call sampled every 10 ms: a held connection would show in most samples
    expect(observed.filter((used) => used > 0).length).toBeLessThan(observed.length / 3)

    const second = await say(h, id, 'second question')
    // the mock counts the words of the whole history: the second call saw the first turn
    expect(second.body.usage.inputTokens).toBe(2 + 9 + 2)
    expect(second.body.session).toMatchObject({ turnCount: 2, inputTokens: 2 + 13, outputTokens: 18 })

    const messages = await rows('SELECT role, content FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant'])
    expect(messages[0].content).toBe('first question')
    const costs = await rows(
      'SELECT operation, model, input_tokens, output_tokens, cost_usd::float8 AS cost, latency_ms, status, error_type, request_id FROM warden.llm_requests WHERE session_id = $1 ORDER BY id',
      [id],
    )
    expect(costs).toHaveLength(2)
    expect(costs[0]).toMatchObject({
      operation: 'chat',
      model: MODEL,
      input_tokens: 2,
      output_tokens: 9,
      status: 'ok',
      error_type: null,
      request_id: expect.stringMatching(/^req_/),
    })
    expect(costs[0].cost).toBeCloseTo((2 * 3 + 9 * 15) / 1e6, 9)
    expect(costs[0].latency_ms).toBeGreaterThanOrEqual(140)
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('streams deltas over SSE and stores the turn like a non-streaming one', async () => {
    const h = await start({ mock: { ttftMs: 50, outputTokens: 20, tokensPerSecond: 200 } })
    const id = await createSession(h)
    const reply = await sayStreaming(h, id, 'stream please')
    expect(reply.ok).toBe(true)
    const deltas = reply.events!.filter((e) => e.event === 'delta')
    expect(deltas.length).toBeGreaterThan(1)
    const done = reply.body
    expect(done.session).toMatchObject({ id, turnCount: 1, outputTokens: 20 })
    expect(deltas.map((e) => (e.data as { text: string }).text).join('')).toBe(done.reply.text)
    expect(await rows('SELECT role FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])).toEqual([
      { role: 'user' },
      { role: 'assistant' },
    ])
    expect(await rows('SELECT status, output_tokens FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([
      { status: 'ok', output_tokens: 20 },
    ])
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('parallel tools each run on their own connection; every LLM call gets its own cost row', async () => {
    const h = await start({ mock: { latencyMs: 20 } })
    const id = await createSession(h)
    for (const stream of [false, true]) {
      const reply = stream ? await sayStreaming(h, id, 'look it up [tools:3]') : await say(h, id, 'look it up [tools:3]')
      expect(reply.ok, JSON.stringify(reply.body)).toBe(true)
      expect(reply.body.usage.llmCalls).toBe(2)
      expect(reply.body.reply.stopReason).toBe('end_turn')
    }
    const messages = await rows('SELECT role, content FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user', 'assistant', 'tool', 'assistant'])
    for (const tool of messages.filter((m) => m.role === 'tool')) {
      const results = tool.content as Array<{ type: string; is_error?: boolean; content: string }>
      expect(results).toHaveLength(3)
      expect(results.every((r) => r.type === 'tool_result' && !r.is_error)).toBe(true)
      const pids = results.map((r) => (JSON.parse(r.content) as { backendPid: number }).backendPid)
      expect(new Set(pids).size).toBe(3)
    }
    expect(messages[2].content[0].content).toContain('"turnCount":0')
    const costs = await rows('SELECT status, output_tokens FROM warden.llm_requests WHERE session_id = $1 ORDER BY id', [id])
    expect(costs).toHaveLength(4)
    expect(costs.every((c) => c.status === 'ok')).toBe(true)
    expect(await rows('SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 2 }])
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('when tool rounds run out, the unanswered tool_use is not stored, so the session stays usable', async () => {
    const h = await start({ server: { maxToolRounds: 0 } })
    const id = await createSession(h)
    const reply = await say(h, id, 'loop forever [tools:2]')
    expect(reply.body.reply).toMatchObject({ stopReason: 'tool_use', text: '' })
    const stored = await rows(`SELECT content FROM warden.chat_messages WHERE session_id = $1 AND role = 'assistant'`, [id])
    expect(stored[0].content).toEqual([{ type: 'text', text: '(no answer: tool rounds exhausted)' }])
    expect((await say(h, id, 'and now?')).status).toBe(200)
  })

  it('a session ended while its LLM call runs gets no turn, but the billed call keeps its cost row', async () => {
    const h = await start({ mock: { latencyMs: 300 } })
    const id = await createSession(h)
    const turn = say(h, id, 'slow one')
    await sleep(100)
    await h.api.request('POST', `sessions/${id}/end`)
    expectError(await turn, 409, 'session_ended')
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows('SELECT status FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([{ status: 'ok' }])
  })

  it('two turns of one session at once: one is written, the other is refused as a conflict instead of interleaving', async () => {
    const h = await start({ mock: { latencyMs: 100 } })
    const id = await createSession(h)
    const replies = await Promise.all([say(h, id, 'one'), say(h, id, 'two')])
    expect(replies.map((r) => r.status).sort()).toEqual([200, 409])
    expect(replies.find((r) => r.status === 409)!.body.error.code).toBe('turn_conflict')
    expect(await rows('SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 1 }])
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 2 }])
  })
})

describe('chat path: hold mode (the anti-pattern, for comparison)', () => {
  it('works, but holds a connection across the LLM call: the detector counts it and the backend sits idle in transaction', async () => {
    const h = await start({ mock: { latencyMs: 400 }, server: { pattern: 'hold', applicationName: 'warden-chat-hold-test' } })
    const id = await createSession(h)
    const turn = say(h, id, 'hold it')
    const idle = await waitFor(async () => {
      const found = await rows(
        `SELECT state FROM pg_stat_activity WHERE application_name = 'warden-chat-hold-test' AND state = 'idle in transaction'`,
      )
      return found.length > 0 ? found : undefined
    })
    expect(idle).toHaveLength(1)
    expect((await turn).status).toBe(200)
    expect(await heldDuringLlm(h)).toBe(1)
    expect(await counter(h.registry, 'warden_db_connection_held_during_llm_call_total', { operation: 'chat' })).toBe(1)
  })
})

describe('chat path: lifecycle', () => {
  it('a streaming client that disconnects mid-stream closes its session (disconnect) and nothing of the turn is written', async () => {
    const h = await start({ mock: { ttftMs: 20, outputTokens: 60, tokensPerSecond: 20 } })
    const id = await createSession(h)
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        `${h.server.chatUrl}/sessions/${id}/messages/stream`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          let buffer = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            buffer += chunk
            if (parseSse(buffer).events.some((e) => e.event === 'delta')) {
              req.destroy()
              resolve()
            }
          })
        },
      )
      req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(error)))
      req.end(JSON.stringify({ message: 'tell me a long story' }))
    })
    const [session] = await waitFor(async () => {
      const found = await rows(
        'SELECT is_active, end_reason, duration_seconds, ended_at FROM warden.chat_sessions WHERE id = $1 AND NOT is_active',
        [id],
      )
      return found.length ? found : undefined
    })
    expect(session).toMatchObject({ is_active: false, end_reason: 'disconnect', ended_at: expect.any(Date) })
    expect(session!.duration_seconds).toBeGreaterThan(0)
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows('SELECT status, error_type FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([
      { status: 'error', error_type: 'cancelled' },
    ])
    expect(await counter(h.registry, 'warden_sessions_closed_total', { reason: 'disconnect' })).toBe(1)
    expect(h.mock.stats().inFlight).toBe(0)
  })

  it("shutdown closes the open sessions this server opened (shutdown), leaves ended ones and other servers' sessions alone", async () => {
    const h = await start()
    const mine = [await createSession(h), await createSession(h), await createSession(h)]
    await h.api.request('POST', `sessions/${mine[2]}/end`)
    const other = uniqueId('other-server')
    await t.exec(`INSERT INTO warden.chat_sessions (id, server_id) VALUES ($1, 'another-host:1')`, [other])
    const { closedSessions } = await h.server.close()
    expect(closedSessions).toBe(2)
    const states = await rows(
      'SELECT id, is_active, end_reason, duration_seconds IS NOT NULL AS has_duration FROM warden.chat_sessions WHERE id = ANY($1) ORDER BY id',
      [[...mine, other]],
    )
    const byId = Object.fromEntries(states.map((s) => [s.id, s]))
    expect(byId[mine[0]!]).toMatchObject({ is_active: false, end_reason: 'shutdown', has_duration: true })
    expect(byId[mine[1]!]).toMatchObject({ is_active: false, end_reason: 'shutdown' })
    expect(byId[mine[2]!]).toMatchObject({ end_reason: 'ended' })
    expect(byId[other]).toMatchObject({ is_active: true, end_reason: null })
    expect(await counter(h.registry, 'warden_sessions_closed_total', { reason: 'shutdown' })).toBe(2)
  })

  it('a conversation continues on a new server (new router, pool, registry) after a restart that keeps sessions', async () => {
    const a = await start({ mock: { outputTokens: 5 } })
    const id = await createSession(a, { id: uniqueId('survivor') })
    expect((await say(a, id, 'remember this')).status).toBe(200)
    await a.server.close({ closeSessions: false })
    const b = await start({ mock: { outputTokens: 5 } })
    const next = await say(b, id, 'what did I say')
    expect(next.status, JSON.stringify(next.body)).toBe(200)
    expect(next.body.usage.inputTokens).toBe(2 + 5 + 4)
    expect(next.body.session).toMatchObject({ id, turnCount: 2, serverId: a.server.router.serverId })
  })
})

describe('chat path: LLM failures', () => {
  async function expectCleanFailure(h: Harness, id: string, errorType: string) {
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows('SELECT turn_count, is_active FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([
      { turn_count: 0, is_active: true },
    ])
    expect(await rows('SELECT status, error_type, output_tokens FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([
      { status: 'error', error_type: errorType, output_tokens: 0 },
    ])
    expect(describePool(h.server.pool).used).toBe(0)
    expect(await heldDuringLlm(h)).toBe(0)
    expect(await counter(h.registry, 'gen_ai_client_operation_duration_seconds', { error_type: errorType })).toBeGreaterThan(0)
  }

  it('an overloaded endpoint (529) is a 502 with an error cost row and nothing of the turn', async () => {
    const h = await start({ mock: { faultSequence: ['529'] } })
    const id = await createSession(h)
    expectError(await say(h, id, 'hi'), 502, 'llm_error')
    await expectCleanFailure(h, id, '529')
    expect((await say(h, id, 'hi again')).status).toBe(200)
  })

  it('a hung endpoint is a 504 once the call deadline passes, with no connection held meanwhile', async () => {
    const h = await start({ mock: { faultSequence: ['hang'] }, server: { llmTimeoutMs: 300 } })
    const id = await createSession(h)
    const t0 = Date.now()
    expectError(await say(h, id, 'hello?'), 504, 'llm_timeout')
    expect(Date.now() - t0).toBeLessThan(2000)
    await expectCleanFailure(h, id, 'timeout')
  })

  it('an endpoint that is down (connection refused) is a quick 502 llm_unavailable', async () => {
    const h = await start({ llmUrl: `http://127.0.0.1:${await freePort()}` })
    const id = await createSession(h)
    const t0 = Date.now()
    const reply = await say(h, id, 'anyone?')
    expectError(reply, 502, 'llm_unavailable')
    expect(reply.body.error.message).toMatch(/ECONNREFUSED/)
    expect(Date.now() - t0).toBeLessThan(2000)
    await expectCleanFailure(h, id, 'connection_error')
  })

  it('an invalid API key is a 502 that says so', async () => {
    const h = await start({ mock: { apiKey: 'the-right-key' }, apiKey: 'a-wrong-key' })
    const id = await createSession(h)
    const reply = await say(h, id, 'hi')
    expectError(reply, 502, 'llm_auth_failed')
    expect(reply.body.error.message).toMatch(/API key/)
    await expectCleanFailure(h, id, '401')
  })

  it('a stream that breaks mid-way ends with an error event; the turn is not written', async () => {
    const h = await start({ mock: { faultSequence: ['midstream'], outputTokens: 10, tokensPerSecond: 1000 } })
    const id = await createSession(h)
    const reply = await sayStreaming(h, id, 'stream and fail')
    expect(reply.status).toBe(200)
    expect(reply.ok).toBe(false)
    expect(reply.events!.some((e) => e.event === 'delta')).toBe(true)
    expect(reply.body).toEqual({ error: { code: 'llm_error', message: expect.stringMatching(/mid-stream/) } })
    await expectCleanFailure(h, id, 'overloaded_error')
  })
})

describe('chat path: bad input', () => {
  it('malformed JSON, missing or oversized messages and bad ids get the stable error body', async () => {
    const h = await start()
    const id = await createSession(h)
    const raw = (path: string, body: string) =>
      fetch(`${h.server.chatUrl}/${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    const malformed = await raw(`sessions/${id}/messages`, '{"message": "unterminated')
    expect(malformed.status).toBe(400)
    expect(await malformed.json()).toEqual({ error: { code: 'invalid_json', message: expect.any(String) } })
    expectError(await h.api.request('POST', `sessions/${id}/messages`, {}), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, { message: '   ' }), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, { message: 42 }), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, ['not', 'an', 'object']), 400, 'invalid_request')
    expectError(await say(h, id, 'x'.repeat(32 * 1024 + 1)), 413, 'message_too_large')
    expectError(await say(h, id, 'é'.repeat(16 * 1024 + 1)), 413, 'message_too_large')
    const huge = await raw(`sessions/${id}/messages`, JSON.stringify({ message: 'y'.repeat(200_000) }))
    expect(huge.status).toBe(413)
    expect(await huge.json()).toMatchObject({ error: { code: 'payload_too_large' } })
    expectError(await h.api.request('POST', 'sessions', { id: 12 }), 400, 'invalid_request')
    expectError(await h.api.request('POST', 'sessions', { id: 'x'.repeat(201) }), 400, 'invalid_request')
    expectError(await h.api.request('POST', 'sessions', { owner: '' }), 400, 'invalid_request')
    const notFound = await h.api.request('GET', 'nothing-here')
    expect(notFound.status).toBe(404)
    expect(await rows('SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows('SELECT count(*)::int AS n FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
  })
})

describe('chat path: metrics', () => {
  it('publishes the GenAI histograms with OTel buckets and low-cardinality labels; two routers share one registry', async () => {
    const registry = new Registry()
    const h = await start({ server: { registry }, mock: { outputTokens: 7 } })
    // a second router on the same registry (e.g. the admin service mounting another) reuses the metrics
    createChatRouter({ pool: h.server.pool, anthropic: anthropicFactory({ baseURL: h.mock.url, apiKey: 'k' }), model: MODEL, registry })
    const id = await createSession(h)
    await say(h, id, 'count my tokens')
    const text = await registry.metrics()
    expect(text).toContain('# TYPE gen_ai_client_operation_duration_seconds histogram')
    expect(text).toContain(
      `gen_ai_client_operation_duration_seconds_count{gen_ai_request_model="${MODEL}",gen_ai_provider_name="anthropic",error_type=""} 1`,
    )
    expect(text).toContain(`gen_ai_client_token_usage_sum{gen_ai_request_model="${MODEL}",gen_ai_token_type="output"} 7`)
    expect(text).toContain(`gen_ai_client_token_usage_sum{gen_ai_request_model="${MODEL}",gen_ai_token_type="input"} 3`)
    const durationBuckets = [...text.matchAll(/gen_ai_client_operation_duration_seconds_bucket\{le="([^"]+)"/g)].map((m) => m[1])
    expect(durationBuckets).toEqual([...GEN_AI_DURATION_BUCKETS.map(String), '+Inf'])
    const tokenBuckets = [
      ...text.matchAll(/gen_ai_client_token_usage_bucket\{le="([^"]+)",gen_ai_request_model="[^"]+",gen_ai_token_type="output"/g),
    ].map((m) => m[1])
    expect(tokenBuckets).toEqual([...GEN_AI_TOKEN_BUCKETS.map(String), '+Inf'])
    expect(text).not.toContain(id)
  })
})
