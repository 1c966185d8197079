import { describe, expect, it } from 'vitest'
import { describePool } from '../src/pool/instrumented-pool.js'
import { MODEL, createSession, expectError, heldDuringLlm, metricSum, rows, say, sayStreaming, useChatHarness } from './helpers/chat.js'
import { waitFor } from './helpers/wait.js'

const chat = useChatHarness('chat_turns')

describe('chat turns: release before call', () => {
  it('a turn stores user + assistant messages, one ok cost row and the counters, with no connection held during the LLM call', async () => {
    const h = await chat.start({ mock: { latencyMs: 150, outputTokens: 9 } })
    const id = await createSession(h)
    const observed: number[] = []
    const sampling = setInterval(() => observed.push(describePool(h.server.pool).used), 10)
    const first = await say(h, id, 'first question')
    clearInterval(sampling)
    expect(first.status, JSON.stringify(first.body)).toBe(200)
    expect(first.body.reply).toMatchObject({ role: 'assistant', stopReason: 'end_turn' })
    expect(first.body.reply.text.split(' ')).toHaveLength(9)
    expect(first.body.usage).toMatchObject({ inputTokens: 2, outputTokens: 9, llmCalls: 1 })
    expect(first.body.session).toMatchObject({ id, turnCount: 1, inputTokens: 2, outputTokens: 9 })
    // 150 ms of LLM call sampled every 10 ms: a held connection would show in most samples
    expect(observed.filter((used) => used > 0).length).toBeLessThan(observed.length / 3)

    const second = await say(h, id, 'second question')
    // the mock counts the words of the whole history: the second call saw the first turn
    expect(second.body.usage.inputTokens).toBe(2 + 9 + 2)
    expect(second.body.session).toMatchObject({ turnCount: 2, inputTokens: 2 + 13, outputTokens: 18 })

    const messages = await rows(h, 'SELECT role, content FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant'])
    expect(messages[0].content).toBe('first question')
    const costs = await rows(
      h,
      'SELECT operation, model, input_tokens, output_tokens, cost_usd::float8 AS cost, latency_ms, status, error_type, request_id FROM warden.llm_requests WHERE session_id = $1 ORDER BY id',
      [id],
    )
    expect(costs).toHaveLength(2)
    const [billed] = h.mock.calls()
    expect(costs[0]).toMatchObject({
      operation: 'chat',
      model: MODEL,
      input_tokens: 2,
      output_tokens: 9,
      status: 'ok',
      error_type: null,
      request_id: billed!.requestId,
    })
    expect(costs[0].cost).toBeCloseTo((2 * 3 + 9 * 15) / 1e6, 9)
    expect(costs[0].latency_ms).toBeGreaterThanOrEqual(140)
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('streams deltas over SSE and stores the turn like a non-streaming one', async () => {
    const h = await chat.start({ mock: { ttftMs: 50, outputTokens: 20, tokensPerSecond: 200 } })
    const id = await createSession(h)
    const reply = await sayStreaming(h, id, 'stream please')
    expect(reply.ok).toBe(true)
    const deltas = reply.events!.filter((e) => e.event === 'delta')
    expect(deltas.length).toBeGreaterThan(1)
    const done = reply.body
    expect(done.session).toMatchObject({ id, turnCount: 1, outputTokens: 20 })
    expect(deltas.map((e) => (e.data as { text: string }).text).join('')).toBe(done.reply.text)
    expect(await rows(h, 'SELECT role FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])).toEqual([
      { role: 'user' },
      { role: 'assistant' },
    ])
    expect(await rows(h, 'SELECT status, output_tokens FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([
      { status: 'ok', output_tokens: 20 },
    ])
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('parallel tools each run on their own connection; every LLM call gets its own cost row', async () => {
    const h = await chat.start({ mock: { latencyMs: 20 } })
    const id = await createSession(h)
    for (const stream of [false, true]) {
      const reply = stream ? await sayStreaming(h, id, 'look it up [tools:3]') : await say(h, id, 'look it up [tools:3]')
      expect(reply.ok, JSON.stringify(reply.body)).toBe(true)
      expect(reply.body.usage.llmCalls).toBe(2)
      expect(reply.body.reply.stopReason).toBe('end_turn')
    }
    const messages = await rows(h, 'SELECT role, content FROM warden.chat_messages WHERE session_id = $1 ORDER BY id', [id])
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user', 'assistant', 'tool', 'assistant'])
    for (const tool of messages.filter((m) => m.role === 'tool')) {
      const results = tool.content as Array<{ type: string; is_error?: boolean; content: string }>
      expect(results).toHaveLength(3)
      expect(results.every((r) => r.type === 'tool_result' && !r.is_error)).toBe(true)
      const pids = results.map((r) => (JSON.parse(r.content) as { backendPid: number }).backendPid)
      expect(new Set(pids).size).toBe(3)
    }
    expect(messages[2].content[0].content).toContain('"turnCount":0')
    const costs = await rows(h, 'SELECT status, output_tokens FROM warden.llm_requests WHERE session_id = $1 ORDER BY id', [id])
    expect(costs).toHaveLength(4)
    expect(costs.every((c) => c.status === 'ok')).toBe(true)
    expect(await rows(h, 'SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 2 }])
    expect(await heldDuringLlm(h)).toBe(0)
  })

  it('when tool rounds run out, the unanswered tool_use is not stored, so the session stays usable', async () => {
    const h = await chat.start({ server: { maxToolRounds: 0 } })
    const id = await createSession(h)
    const reply = await say(h, id, 'loop forever [tools:2]')
    expect(reply.body.reply).toMatchObject({ stopReason: 'tool_use', text: '' })
    const stored = await rows(h, `SELECT content FROM warden.chat_messages WHERE session_id = $1 AND role = 'assistant'`, [id])
    expect(stored[0].content).toEqual([{ type: 'text', text: '(no answer: tool rounds exhausted)' }])
    expect((await say(h, id, 'and now?')).status).toBe(200)
  })

  it('a session ended while its LLM call runs gets no turn, but the billed call keeps its cost row', async () => {
    const h = await chat.start({ mock: { latencyMs: 300 } })
    const id = await createSession(h)
    const turn = say(h, id, 'slow one')
    await waitFor(async () => h.mock.stats().inFlight === 1, 'the LLM call to start')
    await h.api.request('POST', `sessions/${id}/end`)
    expectError(await turn, 409, 'session_ended')
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows(h, 'SELECT status FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([{ status: 'ok' }])
  })

  it('two turns of one session at once: one is written, the other is refused as a conflict instead of interleaving', async () => {
    const h = await chat.start({ mock: { latencyMs: 100 } })
    const id = await createSession(h)
    const replies = await Promise.all([say(h, id, 'one'), say(h, id, 'two')])
    expect(replies.map((r) => r.status).sort()).toEqual([200, 409])
    expect(replies.find((r) => r.status === 409)!.body.error.code).toBe('turn_conflict')
    expect(await rows(h, 'SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 1 }])
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 2 }])
    // both calls were billed: the refused turn keeps its cost row (the invariant after each test checks each has one)
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([{ n: 2 }])
  })
})

describe('chat turns: hold mode (the anti-pattern, for comparison)', () => {
  it('works, but holds a connection across the LLM call: the detector counts it and the backend sits idle in transaction', async () => {
    const h = await chat.start({ mock: { latencyMs: 400 }, server: { pattern: 'hold', applicationName: 'warden-chat-hold-test' } })
    const id = await createSession(h)
    const turn = say(h, id, 'hold it')
    const idle = await waitFor(async () => {
      const found = await rows(
        h,
        `SELECT state FROM pg_stat_activity WHERE application_name = 'warden-chat-hold-test' AND state = 'idle in transaction'`,
      )
      return found.length > 0 ? found : undefined
    }, 'the held backend idle in transaction')
    expect(idle).toHaveLength(1)
    expect((await turn).status).toBe(200)
    expect(await heldDuringLlm(h)).toBe(1)
    expect(await metricSum(h, 'warden_db_connection_held_during_llm_call_total', { operation: 'chat' })).toBe(1)
  })
})
