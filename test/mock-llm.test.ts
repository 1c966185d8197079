import { describe, it, expect, afterEach } from 'vitest'
import Anthropic, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  OverloadedError,
  RateLimitError,
} from '@anthropic-ai/sdk'
import { startMockLlm, type MockLlmOptions, type MockLlmServer } from '../src/llm/mock-server.js'
import { latencySampler, lognormalParams, mulberry32 } from '../src/llm/latency.js'
import { waitFor } from './helpers/wait.js'

const MODEL = 'claude-mock-1'
const NO_RETRY = { headers: { 'x-mock-no-retry': '1' } }

const servers: MockLlmServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

async function start(opts: MockLlmOptions = {}): Promise<MockLlmServer> {
  const s = await startMockLlm({ port: 0, ...opts })
  servers.push(s)
  return s
}

function client(server: MockLlmServer, extra: { maxRetries?: number; timeout?: number; apiKey?: string } = {}): Anthropic {
  return new Anthropic({
    baseURL: server.url,
    apiKey: extra.apiKey ?? 'test-key',
    maxRetries: extra.maxRetries ?? 0,
    timeout: extra.timeout,
  })
}

const hello = { model: MODEL, max_tokens: 256, messages: [{ role: 'user' as const, content: 'hello there mock model' }] }

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected the promise to reject')
}

const wordCount = (s: string) => s.split(/\s+/).filter(Boolean).length

describe('mock LLM: successful replies through the real SDK', () => {
  it('answers a non-streaming create with text and usage', async () => {
    const server = await start({ outputTokens: 12 })
    const msg = await client(server).messages.create(hello)
    expect(msg.type).toBe('message')
    expect(msg.role).toBe('assistant')
    expect(msg.model).toBe(MODEL)
    expect(msg.stop_reason).toBe('end_turn')
    expect(msg.content).toHaveLength(1)
    const block = msg.content[0]!
    expect(block.type).toBe('text')
    expect(wordCount(block.type === 'text' ? block.text : '')).toBe(12)
    expect(msg.usage.input_tokens).toBe(4)
    expect(msg.usage.output_tokens).toBe(12)
    expect(server.stats()).toMatchObject({ requests: 1, byStatus: { '200': 1 }, streams: 0, inFlight: 0 })
  })

  it('truncates at max_tokens with stop_reason max_tokens', async () => {
    const server = await start({ outputTokens: 50 })
    const msg = await client(server).messages.create({ ...hello, max_tokens: 5 })
    expect(msg.stop_reason).toBe('max_tokens')
    expect(msg.usage.output_tokens).toBe(5)
  })

  it('streams with messages.stream(): text assembled, usage present, TTFT and pacing honoured', async () => {
    const server = await start({ ttftMs: 300, outputTokens: 20, tokensPerSecond: 100 })
    const t0 = Date.now()
    let firstTextAt = 0
    const deltas: string[] = []
    const stream = client(server).messages.stream(hello)
    stream.on('text', (t) => {
      if (!firstTextAt) firstTextAt = Date.now()
      deltas.push(t)
    })
    const msg = await stream.finalMessage()
    const total = Date.now() - t0
    expect(firstTextAt - t0).toBeGreaterThanOrEqual(280)
    // 20 tokens at 100/s: the last one is due 190 ms after the first.
    expect(total).toBeGreaterThanOrEqual(280 + 180)
    expect(deltas.length).toBeGreaterThan(1)
    const block = msg.content[0]!
    expect(block.type === 'text' ? block.text : '').toBe(deltas.join(''))
    expect(wordCount(deltas.join(''))).toBe(20)
    expect(msg.usage).toMatchObject({ input_tokens: 4, output_tokens: 20 })
    expect(msg.stop_reason).toBe('end_turn')
    expect(server.stats()).toMatchObject({ streams: 1, byStatus: { '200': 1 } })
  })

  it('uses latencyMs as TTFT when streaming without ttftMs', async () => {
    const server = await start({ latencyMs: 250, outputTokens: 3 })
    const t0 = Date.now()
    let firstTextAt = 0
    const stream = client(server)
      .messages.stream(hello)
      .on('text', () => {
        firstTextAt ||= Date.now()
      })
    await stream.finalMessage()
    expect(firstTextAt - t0).toBeGreaterThanOrEqual(230)
  })

  it('honours a fixed non-streaming latency', async () => {
    const server = await start({ latencyMs: 300 })
    const t0 = Date.now()
    await client(server).messages.create(hello)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
  })

  it('serves /healthz', async () => {
    const server = await start()
    const res = await fetch(`${server.url}/healthz`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ ok: true })
  })

  it('holds hundreds of concurrent pending requests on timers', async () => {
    // 2 s calls: on a loaded 2-core machine the 400 requests may take a second to arrive, and the
    // first must still be pending when the 300th comes in
    const server = await start({ latencyMs: 2000, outputTokens: 2 })
    const c = client(server)
    const all = Array.from({ length: 400 }, () => c.messages.create(hello))
    await waitFor(() => server.stats().inFlight >= 300, '300 requests in flight', 10_000, 10)
    const results = await Promise.all(all)
    expect(results.every((m) => m.usage.output_tokens === 2)).toBe(true)
    expect(server.stats()).toMatchObject({ requests: 400, inFlight: 0, byStatus: { '200': 400 } })
    expect(server.stats().maxInFlight).toBeGreaterThanOrEqual(300)
  })
})

describe('mock LLM: faults', () => {
  it('sends 429 with retry-after that the SDK honours and retries to success', async () => {
    const server = await start({ faultSequence: ['429'], retryAfterMs: 200 })
    const t0 = Date.now()
    const msg = await client(server, { maxRetries: 2 }).messages.create(hello)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(msg.content[0]?.type).toBe('text')
    expect(server.stats()).toMatchObject({ requests: 2, byStatus: { '429': 1, '200': 1 }, faults: { '429': 1 } })
  })

  it('x-mock-no-retry turns off SDK retries and 429 surfaces as RateLimitError with headers', async () => {
    const server = await start({ faultSequence: ['429'], retryAfterMs: 1500 })
    const err = await rejection(client(server, { maxRetries: 2 }).messages.create(hello, NO_RETRY))
    expect(err).toBeInstanceOf(RateLimitError)
    const e = err as RateLimitError
    expect(e.status).toBe(429)
    expect(e.type).toBe('rate_limit_error')
    expect(e.headers?.get('retry-after-ms')).toBe('1500')
    expect(e.headers?.get('retry-after')).toBe('2')
    expect(e.headers?.get('x-should-retry')).toBe('false')
    expect(server.stats().requests).toBe(1)
  })

  it('529 surfaces as OverloadedError and 500 as InternalServerError', async () => {
    const server = await start({ faultSequence: ['529', '500'] })
    const c = client(server)
    const e529 = await rejection(c.messages.create(hello))
    expect(e529).toBeInstanceOf(OverloadedError)
    expect((e529 as APIError).status).toBe(529)
    expect((e529 as APIError).type).toBe('overloaded_error')
    const e500 = await rejection(c.messages.create(hello))
    expect(e500).toBeInstanceOf(InternalServerError)
    expect(e500).not.toBeInstanceOf(OverloadedError)
    expect((e500 as APIError).status).toBe(500)
    expect((e500 as APIError).type).toBe('api_error')
    expect(server.stats().byStatus).toEqual({ '529': 1, '500': 1 })
  })

  it('a 529 is retried by the SDK unless x-mock-no-retry is sent', async () => {
    // 529 carries no retry-after, so the SDK's own ~0.5 s backoff applies: one retry keeps this quick.
    const server = await start({ faultSequence: ['529', '529'] })
    const noRetry = await rejection(client(server, { maxRetries: 1 }).messages.create(hello, NO_RETRY))
    expect(noRetry).toBeInstanceOf(OverloadedError)
    expect(server.stats().requests).toBe(1)
    const ok = await client(server, { maxRetries: 1 }).messages.create(hello)
    expect(ok.stop_reason).toBe('end_turn')
    expect(server.stats().byStatus).toEqual({ '529': 2, '200': 1 })
  })

  it('a hang outlasts the client timeout: APIConnectionTimeoutError, and the server lets go', async () => {
    const server = await start({ faultSequence: ['hang'], hangMs: 60_000 })
    const t0 = Date.now()
    const err = await rejection(client(server, { timeout: 300 }).messages.create(hello))
    expect(err).toBeInstanceOf(APIConnectionTimeoutError)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
    await waitFor(() => server.stats().inFlight === 0, 'no request in flight', 2000, 10)
    expect(server.stats().faults.hang).toBe(1)
  })

  it('a hang ends after hangMs with a normal reply', async () => {
    const server = await start({ faultSequence: ['hang'], hangMs: 200 })
    const t0 = Date.now()
    const msg = await client(server).messages.create(hello)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(msg.stop_reason).toBe('end_turn')
  })

  it('a mid-stream error event rejects the stream after some text', async () => {
    const server = await start({ faultSequence: ['midstream'], outputTokens: 10, tokensPerSecond: 1000 })
    const deltas: string[] = []
    const stream = client(server)
      .messages.stream(hello)
      .on('text', (t) => deltas.push(t))
    const err = await rejection(stream.finalMessage())
    expect(err).toBeInstanceOf(APIError)
    expect((err as APIError).type).toBe('overloaded_error')
    expect(deltas.length).toBeGreaterThan(0)
    expect(wordCount(deltas.join(''))).toBeLessThan(10)
    expect(server.stats().faults.midstream).toBe(1)
  })

  it('seeded fault rates are reproducible and roughly follow the rate', async () => {
    const statuses = async (seed: number) => {
      const server = await start({ seed, faults: { rate429: 0.5 } })
      const c = client(server)
      const out: number[] = []
      for (let i = 0; i < 40; i++) {
        out.push(
          await c.messages.create(hello, NO_RETRY).then(
            () => 200,
            (e: APIError) => e.status ?? 0,
          ),
        )
      }
      return out
    }
    const a = await statuses(7)
    const b = await statuses(7)
    expect(a).toEqual(b)
    const n429 = a.filter((s) => s === 429).length
    expect(n429).toBeGreaterThan(8)
    expect(n429).toBeLessThan(32)
    expect(a.filter((s) => s !== 429).every((s) => s === 200)).toBe(true)
  })

  it('rejects a wrong api key with AuthenticationError', async () => {
    const server = await start({ apiKey: 'right-key' })
    const err = await rejection(client(server, { apiKey: 'wrong-key' }).messages.create(hello))
    expect(err).toBeInstanceOf(AuthenticationError)
    expect((err as APIError).type).toBe('authentication_error')
    const ok = await client(server, { apiKey: 'right-key' }).messages.create(hello)
    expect(ok.type).toBe('message')
  })

  it('rejects invalid bodies with BadRequestError', async () => {
    const server = await start()
    const c = client(server)
    const empty = await rejection(c.messages.create({ ...hello, messages: [] }))
    expect(empty).toBeInstanceOf(BadRequestError)
    expect((empty as APIError).type).toBe('invalid_request_error')
    expect((empty as APIError).message).toMatch(/messages/)
    const noModel = await rejection(c.messages.create({ ...hello, model: 42 as unknown as string }))
    expect(noModel).toBeInstanceOf(BadRequestError)
    expect((noModel as APIError).message).toMatch(/model/)
    const res = await fetch(`${server.url}/v1/messages`, {
      method: 'POST',
      body: '{not json',
      headers: { 'content-type': 'application/json' },
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } })
    expect(server.stats().byStatus).toEqual({ '400': 3 })
  })
})

describe('mock LLM: tool use', () => {
  const tools = [
    { name: 'lookup_order', input_schema: { type: 'object' as const, properties: {} } },
    { name: 'lookup_customer', input_schema: { type: 'object' as const, properties: {} } },
  ]

  it('replies with N parallel tool_use blocks, then text once tool results come back', async () => {
    const server = await start()
    const c = client(server)
    const first = await c.messages.create({ ...hello, tools, messages: [{ role: 'user', content: 'check both [tools:3]' }] })
    expect(first.stop_reason).toBe('tool_use')
    const uses = first.content.filter((b) => b.type === 'tool_use')
    expect(uses).toHaveLength(3)
    expect(uses.map((u) => u.name)).toEqual(['lookup_order', 'lookup_customer', 'lookup_order'])
    expect(new Set(uses.map((u) => u.id)).size).toBe(3)
    for (const u of uses) {
      expect(u.id).toMatch(/^toolu_/)
      expect(u.input).toEqual({})
    }
    const second = await c.messages.create({
      ...hello,
      tools,
      messages: [
        { role: 'user', content: 'check both [tools:3]' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: uses.map((u) => ({ type: 'tool_result' as const, tool_use_id: u.id, content: 'found' })) },
      ],
    })
    expect(second.stop_reason).toBe('end_turn')
    expect(second.content[0]?.type).toBe('text')
  })

  it('ignores the marker without a tools array, and streams tool_use blocks too', async () => {
    const server = await start()
    const c = client(server)
    const plain = await c.messages.create({ ...hello, messages: [{ role: 'user', content: '[tools:2]' }] })
    expect(plain.stop_reason).toBe('end_turn')
    const streamed = await c.messages.stream({ ...hello, tools, messages: [{ role: 'user', content: '[tools:2]' }] }).finalMessage()
    expect(streamed.stop_reason).toBe('tool_use')
    expect(streamed.content.map((b) => b.type)).toEqual(['tool_use', 'tool_use'])
    expect(streamed.content.map((b) => (b.type === 'tool_use' ? b.input : null))).toEqual([{}, {}])
  })
})

describe('mock LLM: its own books (what a provider would bill), over HTTP', () => {
  interface Books {
    calls: Array<{ requestId: string; status: number; stream: boolean; billed: boolean; completed: boolean; outputTokens: number }>
    dropped: number
  }
  const books = async (server: MockLlmServer) => (await (await fetch(`${server.url}/_mock/calls`)).json()) as Books

  it('logs every call with the request id the client saw, its status, whether it was billed and the tokens it sent', async () => {
    const server = await start({ faultSequence: ['ok', '529', 'midstream'], outputTokens: 10, tokensPerSecond: 1000 })
    const c = client(server)
    const { data, request_id } = await c.messages.create(hello).withResponse()
    const overloaded = (await rejection(c.messages.create(hello))) as APIError
    const stream = c.messages.stream(hello)
    const deltas: string[] = []
    stream.on('text', (t) => deltas.push(t))
    await rejection(stream.finalMessage())
    const { calls, dropped } = await books(server)
    expect(dropped).toBe(0)
    expect(calls).toEqual([
      expect.objectContaining({ requestId: request_id, status: 200, stream: false, billed: true, completed: true, outputTokens: 10 }),
      expect.objectContaining({ requestId: overloaded.requestID, status: 529, billed: false, completed: false, outputTokens: 0 }),
      expect.objectContaining({ requestId: stream.request_id, status: 200, stream: true, billed: true, completed: false }),
    ])
    expect(data.usage.output_tokens).toBe(10)
    // the cut stream: billed for what it sent before the error, which is what the client received
    expect(calls[2]!.outputTokens).toBe(wordCount(deltas.join('')))
    expect(calls[2]!.outputTokens).toBeLessThan(10)
    const stats = (await (await fetch(`${server.url}/_mock/stats`)).json()) as { requests: number; byStatus: Record<string, number> }
    expect(stats).toMatchObject({ requests: 3, byStatus: { '200': 2, '529': 1 } })
  })

  it('reports prompt-cache usage when asked: input_tokens is the uncached rest, the cache fields come on top', async () => {
    const server = await start({ cache: { readTokens: 1200, creationTokens: 300 }, outputTokens: 5 })
    const c = client(server)
    const msg = await c.messages.create(hello)
    expect(msg.usage).toMatchObject({ input_tokens: 4, cache_read_input_tokens: 1200, cache_creation_input_tokens: 300, output_tokens: 5 })
    const streamed = await c.messages.stream(hello).finalMessage()
    expect(streamed.usage).toMatchObject({ input_tokens: 4, cache_read_input_tokens: 1200, cache_creation_input_tokens: 300 })
    const plain = await start()
    const uncached = await client(plain).messages.create(hello)
    expect(uncached.usage.cache_read_input_tokens ?? null).toBeNull()
    await expect(start({ cache: { readTokens: -1 } })).rejects.toThrow(/cache.readTokens/)
  })
})

describe('mock LLM: close()', () => {
  it('ends a pending hang promptly and frees the port', async () => {
    const server = await startMockLlm({ faultSequence: ['hang'] })
    const pending = rejection(client(server).messages.create(hello))
    await waitFor(() => server.stats().inFlight === 1, 'one request in flight', 2000, 10)
    const t0 = Date.now()
    await server.close()
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(await pending).toBeInstanceOf(APIConnectionError)
    expect(server.stats().inFlight).toBe(0)
    const refused = await rejection(fetch(`${server.url}/healthz`))
    expect(refused).toBeInstanceOf(Error)
  })
})

describe('latency distributions', () => {
  it('lognormal from median and p99 hits both quantiles', () => {
    const draw = latencySampler({ median: 100, p99: 1000 }, mulberry32(42))
    const xs = Array.from({ length: 50_000 }, draw).sort((a, b) => a - b)
    expect(xs[25_000]!).toBeGreaterThan(95)
    expect(xs[25_000]!).toBeLessThan(105)
    expect(xs[49_500]!).toBeGreaterThan(900)
    expect(xs[49_500]!).toBeLessThan(1100)
    expect(lognormalParams(100, 1000).sigma).toBeCloseTo(Math.log(10) / 2.326, 6)
  })

  it('is reproducible with a seed and rejects nonsense', () => {
    const a = Array.from({ length: 5 }, latencySampler({ median: 50, p99: 400 }, mulberry32(1)))
    const b = Array.from({ length: 5 }, latencySampler({ median: 50, p99: 400 }, mulberry32(1)))
    expect(a).toEqual(b)
    expect(new Set(a).size).toBe(5)
    expect(() => latencySampler({ median: 100, p99: 50 }, Math.random)).toThrow(RangeError)
    expect(() => latencySampler(-1, Math.random)).toThrow(RangeError)
  })
})
