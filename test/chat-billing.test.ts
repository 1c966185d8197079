import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db/database.js'
import { migrate } from '../src/db/migrate.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import {
  createSession,
  expectBilledCallsRecorded,
  lostCostEvents,
  metricSum,
  mockCalls,
  rows,
  say,
  streamThenDisconnect,
  useChatHarness,
  type Harness,
} from './helpers/chat.js'
import { waitFor } from './helpers/wait.js'

const chat = useChatHarness('chat_billing')

const costRows = (h: Harness, id: string) =>
  rows(
    h,
    `SELECT request_id, status, error_type, input_tokens, cache_read_input_tokens AS "cacheRead",
            cache_creation_input_tokens AS "cacheCreation", output_tokens, cost_usd::float8 AS cost
       FROM warden.llm_requests WHERE session_id = $1 ORDER BY id`,
    [id],
  )

describe('billing: a cut stream is billed for what was streamed', () => {
  it('a client that disconnects mid-stream leaves a cost row with the provider request id, the input and the tokens already streamed', async () => {
    const h = await chat.start({ mock: { ttftMs: 20, outputTokens: 60, tokensPerSecond: 40 } })
    const id = await createSession(h)
    const received = await streamThenDisconnect(h, id, 'tell me a long story', 3)
    const [row] = await waitFor(async () => {
      const found = await costRows(h, id)
      return found.length > 0 ? found : undefined
    }, 'the cost row of the cancelled stream')
    await waitFor(async () => h.mock.stats().inFlight === 0, 'the mock to see the stream cancelled')
    const [call] = await mockCalls(h)
    expect(call).toMatchObject({ billed: true, completed: false, stream: true })
    expect(row).toMatchObject({ request_id: call!.requestId, status: 'error', error_type: 'cancelled', input_tokens: call!.inputTokens })
    // between what reached the client before it left and what the provider sent (its own count)
    expect(row!.output_tokens).toBeGreaterThanOrEqual(received.split(' ').length)
    expect(row!.output_tokens).toBeLessThanOrEqual(call!.outputTokens)
    expect(row!.cost).toBeCloseTo((row!.input_tokens * 3 + row!.output_tokens * 15) / 1e6, 9)
    expect(await metricSum(h, 'gen_ai_client_token_usage_sum', { gen_ai_token_type: 'output' })).toBe(row!.output_tokens)
  })
})

describe('billing: prompt caching', () => {
  it('input usage counts cached tokens (input + cache read + cache creation) and the cost uses the cache prices', async () => {
    const h = await chat.start({ mock: { cache: { readTokens: 1000, creationTokens: 200 }, outputTokens: 5 } })
    const id = await createSession(h)
    const reply = await say(h, id, 'cached prefix please')
    expect(reply.status, JSON.stringify(reply.body)).toBe(200)
    const [call] = await mockCalls(h)
    const input = call!.inputTokens + call!.cacheReadInputTokens + call!.cacheCreationInputTokens
    expect(call).toMatchObject({ inputTokens: 3, cacheReadInputTokens: 1000, cacheCreationInputTokens: 200 })
    expect(reply.body.usage).toMatchObject({
      inputTokens: input,
      cacheReadInputTokens: 1000,
      cacheCreationInputTokens: 200,
      outputTokens: 5,
    })
    expect(reply.body.session).toMatchObject({ inputTokens: input, outputTokens: 5 })
    const [row] = await costRows(h, id)
    // the row mirrors the provider's usage fields, so it reconciles with the invoice line by line
    expect(row).toMatchObject({ request_id: call!.requestId, input_tokens: 3, cacheRead: 1000, cacheCreation: 200, output_tokens: 5 })
    // default prices: input $3, cache read $0.30, cache write $3.75, output $15 per million tokens
    expect(row!.cost).toBeCloseTo((3 * 3 + 1000 * 0.3 + 200 * 3.75 + 5 * 15) / 1e6, 9)
    expect(await metricSum(h, 'gen_ai_client_token_usage_sum', { gen_ai_token_type: 'input' })).toBe(input)
  })
})

describe('billing: the database goes away while the LLM answers (its own PostgreSQL, halted and resumed)', () => {
  let pg: EmbeddedPostgres
  let db: Database
  beforeAll(async () => {
    pg = await startEmbeddedPostgres()
    db = new Database({
      url: pg.url,
      applicationName: 'warden-test',
      connectTimeout: 5,
      statementTimeout: 30,
      poolMax: 2,
      onPoolError: () => undefined,
    })
    await migrate(db, 'warden')
  })
  afterAll(async () => {
    await db?.close()
    await pg?.stop()
  })

  const start = (options: Parameters<typeof chat.start>[0] = {}) =>
    chat.start({ ...options, database: { url: pg.url, exec: (text, values) => db.pool.query(text, values) } })

  /**
   * Starts a turn, halts PostgreSQL while its LLM call is in flight, and returns once the turn
   * has met the outage: it either answered already or is retrying its write. Resolves to the
   * pending reply (wrapped: awaiting it is the caller's choice).
   */
  async function turnDuringOutage(h: Harness, id: string): Promise<{ reply: ReturnType<typeof say> }> {
    let settled = false
    const reply = say(h, id, 'answer while the database restarts').finally(() => (settled = true))
    await waitFor(async () => h.mock.stats().inFlight === 1, 'the LLM call to start')
    await pg.halt()
    await waitFor(
      async () => settled || h.logs.some((entry) => entry.event === 'chat_write_retry'),
      'the turn to answer or retry its write while PostgreSQL is down',
    )
    return { reply }
  }

  it('release: the turn write waits for the database (bounded backoff) and lands with its one cost row in the same transaction', async () => {
    const h = await start({ mock: { latencyMs: 1500, outputTokens: 4 }, server: { writeRetryMs: 30_000 } })
    const id = await createSession(h)
    const { reply: pending } = await turnDuringOutage(h, id)
    await pg.resume()
    const reply = await pending
    expect(reply.status, JSON.stringify(reply.body)).toBe(200)
    expect(reply.body.session).toMatchObject({ id, turnCount: 1, outputTokens: 4 })
    const [call] = await mockCalls(h)
    expect(await costRows(h, id)).toEqual([expect.objectContaining({ request_id: call!.requestId, status: 'ok', output_tokens: 4 })])
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 2 }])
    expect(lostCostEvents(h)).toEqual([])
  })

  it('hold: the held transaction dies with the server; the turn fails, but the billed call still gets its one cost row', async () => {
    const h = await start({ mock: { latencyMs: 1500, outputTokens: 4 }, server: { writeRetryMs: 30_000, pattern: 'hold' } })
    const id = await createSession(h)
    const { reply: pending } = await turnDuringOutage(h, id)
    await pg.resume()
    const reply = await pending
    expect(reply.status, JSON.stringify(reply.body)).toBe(503)
    expect(reply.body.error.code).toBe('database_unavailable')
    const [call] = await mockCalls(h)
    expect(await costRows(h, id)).toEqual([expect.objectContaining({ request_id: call!.requestId, status: 'ok', output_tokens: 4 })])
    expect(await rows(h, 'SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 0 }])
  })

  it('gone for longer than the retry budget: the client gets a 503 and the lost cost is loud (a counted metric and a log line with the request id)', async () => {
    const h = await start({ mock: { latencyMs: 1500, outputTokens: 4 }, server: { writeRetryMs: 300 } })
    const id = await createSession(h)
    const reply = await (await turnDuringOutage(h, id)).reply
    expect(reply.status, JSON.stringify(reply.body)).toBe(503)
    expect(reply.body.error.code).toBe('database_unavailable')
    const [call] = await mockCalls(h)
    expect(call!.billed).toBe(true)
    expect(await metricSum(h, 'warden_llm_cost_rows_lost_total')).toBe(1)
    const [lost] = lostCostEvents(h)
    expect(lost).toMatchObject({ level: 'error', requestId: call!.requestId, sessionId: id, model: expect.any(String), outputTokens: 4 })
    await pg.resume()
    // back up: still no row for it (a lost row is reported once, never written twice)
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.llm_requests WHERE request_id = $1', [call!.requestId])).toEqual([{ n: 0 }])
    await expectBilledCallsRecorded(h)
  })

  it('a shutdown past its grace does not wait out the write retries: the row it cannot write is reported lost before the server stops', async () => {
    const h = await start({ mock: { latencyMs: 1500, outputTokens: 4 }, server: { writeRetryMs: 60_000 } })
    const id = await createSession(h)
    const { reply } = await turnDuringOutage(h, id)
    await h.close({ graceMs: 100 })
    expect((await reply).status).toBe(503)
    const [call] = await mockCalls(h)
    expect(lostCostEvents(h)).toEqual([expect.objectContaining({ requestId: call!.requestId, sessionId: id })])
    expect(await metricSum(h, 'warden_llm_cost_rows_lost_total')).toBe(1)
    await pg.resume()
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.llm_requests WHERE request_id = $1', [call!.requestId])).toEqual([{ n: 0 }])
  })
})
