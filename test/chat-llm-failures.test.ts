import { describe, expect, it } from 'vitest'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { describePool } from '../src/pool/instrumented-pool.js'
import {
  createSession,
  expectError,
  heldDuringLlm,
  metricSum,
  rows,
  say,
  sayStreaming,
  useChatHarness,
  type Harness,
} from './helpers/chat.js'

const chat = useChatHarness('chat_llm_failures')

/** A failed LLM call writes nothing of the turn, keeps its error cost row, holds no connection and is measured. */
async function expectCleanFailure(h: Harness, id: string, errorType: string, outputTokens = 0) {
  expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
  expect(await rows(h, 'SELECT turn_count, is_active FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([
    { turn_count: 0, is_active: true },
  ])
  expect(await rows(h, 'SELECT status, error_type, output_tokens FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([
    { status: 'error', error_type: errorType, output_tokens: outputTokens },
  ])
  expect(describePool(h.server.pool).used).toBe(0)
  expect(await heldDuringLlm(h)).toBe(0)
  expect(await metricSum(h, 'gen_ai_client_operation_duration_seconds_count', { error_type: errorType })).toBe(1)
}

describe('chat turns: LLM failures', () => {
  it('an overloaded endpoint (529) is a 502 with an error cost row and nothing of the turn', async () => {
    const h = await chat.start({ mock: { faultSequence: ['529'] } })
    const id = await createSession(h)
    expectError(await say(h, id, 'hi'), 502, 'llm_error')
    await expectCleanFailure(h, id, '529')
    expect((await say(h, id, 'hi again')).status).toBe(200)
  })

  it('a hung endpoint is a 504 once the call deadline passes, with no connection held meanwhile', async () => {
    const h = await chat.start({ mock: { faultSequence: ['hang'] }, server: { llmTimeoutMs: 300 } })
    const id = await createSession(h)
    expectError(await say(h, id, 'hello?'), 504, 'llm_timeout')
    await expectCleanFailure(h, id, 'timeout')
  })

  it('an endpoint that is down (connection refused) is a 502 llm_unavailable naming the cause', async () => {
    const h = await chat.start({ llmUrl: `http://127.0.0.1:${await freePort()}` })
    const id = await createSession(h)
    const reply = await say(h, id, 'anyone?')
    expectError(reply, 502, 'llm_unavailable')
    expect(reply.body.error.message).toMatch(/ECONNREFUSED/)
    await expectCleanFailure(h, id, 'connection_error')
  })

  it('an invalid API key is a 502 that says so', async () => {
    const h = await chat.start({ mock: { apiKey: 'the-right-key' }, apiKey: 'a-wrong-key' })
    const id = await createSession(h)
    const reply = await say(h, id, 'hi')
    expectError(reply, 502, 'llm_auth_failed')
    expect(reply.body.error.message).toMatch(/API key/)
    await expectCleanFailure(h, id, '401')
  })

  it('a stream that breaks mid-way ends with an error event; the turn is not written, the tokens streamed are billed', async () => {
    const h = await chat.start({ mock: { faultSequence: ['midstream'], outputTokens: 10, tokensPerSecond: 1000 } })
    const id = await createSession(h)
    const reply = await sayStreaming(h, id, 'stream and fail')
    expect(reply.status).toBe(200)
    expect(reply.ok).toBe(false)
    const received = reply.events!.filter((e) => e.event === 'delta').map((e) => (e.data as { text: string }).text)
    expect(received.length).toBeGreaterThan(0)
    expect(reply.body).toEqual({ error: { code: 'llm_error', message: expect.stringMatching(/mid-stream/) } })
    // the mock's own count of what it streamed before the error, which the client received in full
    const [call] = h.mock.calls()
    expect(call!.outputTokens).toBe(received.join('').split(' ').length)
    await expectCleanFailure(h, id, 'overloaded_error', call!.outputTokens)
  })
})
