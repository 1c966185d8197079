/**
 * An Anthropic-compatible Messages API server for tests, demos and load tests.
 *
 * It speaks just enough of the wire protocol for the real @anthropic-ai/sdk (JSON replies,
 * SSE streams, error bodies, retry headers) so that the code under test runs its production
 * path, retries and timeouts included. Everything is timer-driven so thousands of pending
 * calls cost only memory, which is what a pool-exhaustion load test needs from its LLM.
 */
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { latencySampler, makeRng, type LatencySpec } from './latency.js'
import { MOCK_LLM_ROUTES } from './mock-routes.js'

export type MockFault = '429' | '529' | '500' | 'hang' | 'midstream' | 'ok'
type FaultKind = Exclude<MockFault, 'ok'>

export interface MockLlmOptions {
  /** Fixed ms, or lognormal by median/p99. Non-streaming: time before the reply; streaming: TTFT unless ttftMs. */
  latencyMs?: LatencySpec
  ttftMs?: number
  tokensPerSecond?: number
  outputTokens?: number
  /** Probabilities 0..1; rateMidStreamError is only drawn for streaming requests. */
  faults?: { rate429?: number; rate529?: number; rate500?: number; rateHang?: number; rateMidStreamError?: number }
  /** Consumed one per valid request, in order, before the rates apply: makes fault tests deterministic. */
  faultSequence?: MockFault[]
  retryAfterMs?: number
  hangMs?: number
  apiKey?: string
  seed?: number
  /** `[tools:N]` in the last user turn plus a `tools` array yields N tool_use blocks; false turns that off. */
  toolUse?: boolean | { input?: Record<string, unknown> }
  /**
   * Prompt caching as the real API reports it: every reply's usage carries these
   * cache_read_input_tokens and cache_creation_input_tokens (a cached prefix in front of the
   * prompt), and input_tokens stays the uncached rest. Unset: the usage has no cache fields.
   */
  cache?: { readTokens?: number; creationTokens?: number }
}

/**
 * One POST /v1/messages as the mock answered it: what a provider's billing would see. A call is
 * billed once its 200 went out (for a stream: headers and message_start), whether or not the
 * client read it to the end; `outputTokens` is what was sent, cut streams included.
 */
export interface MockLlmCall {
  requestId: string
  status: number
  stream: boolean
  model: string | null
  billed: boolean
  /** the reply (or stream) was sent to its end */
  completed: boolean
  inputTokens: number
  cacheReadInputTokens: number
  cacheCreationInputTokens: number
  outputTokens: number
}

export interface MockLlmStats {
  /** POST /v1/messages requests received (health checks and 404s excluded). */
  requests: number
  byStatus: Record<string, number>
  streams: number
  inFlight: number
  maxInFlight: number
  faults: Record<FaultKind, number>
}

export interface MockLlmServer {
  url: string
  port: number
  stats(): MockLlmStats
  /** every call answered, oldest first (also `GET /_mock/calls`, for a mock in another process) */
  calls(): MockLlmCall[]
  close(): Promise<void>
}

/** The mock's own bookkeeping over HTTP, outside the Messages API's path space. */
export const MOCK_STATS_PATH = MOCK_LLM_ROUTES.stats.path
export const MOCK_CALLS_PATH = MOCK_LLM_ROUTES.calls.path
/** Enough for any load test here; older calls are dropped (and counted) beyond it. */
const MAX_CALL_LOG = 200_000

interface MessageParam {
  role: 'user' | 'assistant'
  content: unknown
}
interface MessagesBody {
  model: string
  max_tokens: number
  messages: MessageParam[]
  stream: boolean
  system?: unknown
  tools?: Array<{ name: string }>
}

/** One request's timers, so a client abort or close() can release them at once. */
interface Exchange {
  res: ServerResponse
  sleeps: Map<NodeJS.Timeout, (ok: boolean) => void>
  done: boolean
  call: MockLlmCall
}

const MAX_BODY_BYTES = 32 * 1024 * 1024
// Coalescing due tokens into one delta per tick bounds writes per stream; at 200 tok/s a
// timer per token across thousands of streams would swamp two cores.
const STREAM_TICK_MIN_MS = 50
const TOOL_USE_OUTPUT_TOKENS = 12
const MAX_TIMER_MS = 2 ** 31 - 1
const LOREM = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et ' +
  'dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea ' +
  'commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur'
).split(' ')

// Bad options throw at start-up, where the caller can see which one, not as 500s later.
function checkRate(name: string, v = 0): number {
  if (!(v >= 0 && v <= 1)) throw new RangeError(`faults.${name} must be within 0..1, got ${v}`)
  return v
}

function checkCount(name: string, v = 0): number {
  if (!(Number.isInteger(v) && v >= 0)) throw new RangeError(`${name} must be an integer >= 0, got ${v}`)
  return v
}

function checkPositive(name: string, v: number, integer = false): number {
  if (!(v > 0) || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
    throw new RangeError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`)
  return v
}

const randomId = (prefix: string): string => `${prefix}${randomBytes(12).toString('hex')}`

const sse = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

function loremText(from: number, to: number): string {
  let s = ''
  for (let i = from; i < to; i++) s += (i === 0 ? '' : ' ') + LOREM[i % LOREM.length]
  return s
}

/** Plain text of a content value, including tool results, for the rough input token count. */
function contentText(content: unknown, includeToolResults: boolean): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return ''
  const parts: string[] = []
  for (const block of content as Array<Record<string, unknown> | null>) {
    if (!block || typeof block !== 'object') continue
    if (block.type === 'text' && typeof block.text === 'string') parts.push(block.text)
    else if (includeToolResults && block.type === 'tool_result') parts.push(contentText(block.content, false))
    else if (includeToolResults && block.type === 'tool_use') parts.push(JSON.stringify(block.input ?? {}))
  }
  return parts.join(' ')
}

const countWords = (text: string): number => text.match(/\S+/g)?.length ?? 0

function validate(body: unknown): MessagesBody | string {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return 'body: expected a JSON object'
  const b = body as Record<string, unknown>
  if (typeof b.model !== 'string' || b.model === '') return 'model: Field required (a non-empty string)'
  if (typeof b.max_tokens !== 'number' || !Number.isInteger(b.max_tokens) || b.max_tokens < 1)
    return 'max_tokens: Field required (an integer >= 1)'
  if (!Array.isArray(b.messages) || b.messages.length === 0) return 'messages: at least one message is required'
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const msg = m as Record<string, unknown> | null
    if (!msg || (msg.role !== 'user' && msg.role !== 'assistant')) return `messages.${i}.role: expected "user" or "assistant"`
    if (typeof msg.content !== 'string' && !Array.isArray(msg.content)) return `messages.${i}.content: expected a string or an array`
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') return 'stream: expected a boolean'
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) return 'tools: expected an array'
    for (const [i, t] of (b.tools as unknown[]).entries()) {
      if (!t || typeof (t as { name?: unknown }).name !== 'string') return `tools.${i}.name: Field required`
    }
  }
  const tools = b.tools as Array<{ name: string }> | undefined
  return {
    model: b.model,
    max_tokens: b.max_tokens,
    messages: b.messages as MessageParam[],
    stream: b.stream === true,
    system: b.system,
    tools,
  }
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      // Keep draining past the limit so the 413 can be written on a readable socket.
      if (size <= MAX_BODY_BYTES) chunks.push(c)
    })
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
    req.on('close', () => req.complete || reject(new Error('client closed the request')))
  })
}

export async function startMockLlm(opts: MockLlmOptions & { port?: number; host?: string } = {}): Promise<MockLlmServer> {
  const rng = makeRng(opts.seed)
  const latency = latencySampler(opts.latencyMs, rng)
  if (opts.ttftMs !== undefined && !(opts.ttftMs >= 0)) throw new RangeError(`ttftMs must be >= 0, got ${opts.ttftMs}`)
  const tokensPerSecond = checkPositive('tokensPerSecond', opts.tokensPerSecond ?? 200)
  const outputTokens = checkPositive('outputTokens', opts.outputTokens ?? 32, true)
  const retryAfterMs = checkPositive('retryAfterMs', opts.retryAfterMs ?? 1000)
  const hangMs = Math.min(checkPositive('hangMs', opts.hangMs ?? 120_000), MAX_TIMER_MS)
  const f = opts.faults ?? {}
  const rates: Array<[FaultKind, number]> = [
    ['429', checkRate('rate429', f.rate429)],
    ['529', checkRate('rate529', f.rate529)],
    ['500', checkRate('rate500', f.rate500)],
    ['hang', checkRate('rateHang', f.rateHang)],
  ]
  if (rates.reduce((s, [, r]) => s + r, 0) > 1) throw new RangeError('faults: rate429 + rate529 + rate500 + rateHang must be <= 1')
  const rateMid = checkRate('rateMidStreamError', f.rateMidStreamError)
  const sequence = [...(opts.faultSequence ?? [])]
  const toolUse = opts.toolUse ?? true
  const toolInput = typeof toolUse === 'object' ? (toolUse.input ?? {}) : {}
  const cache =
    opts.cache === undefined
      ? undefined
      : {
          cache_read_input_tokens: checkCount('cache.readTokens', opts.cache.readTokens),
          cache_creation_input_tokens: checkCount('cache.creationTokens', opts.cache.creationTokens),
        }
  const callLog: MockLlmCall[] = []
  let callsDropped = 0

  const faults = { '429': 0, '529': 0, '500': 0, hang: 0, midstream: 0 }
  const stats: MockLlmStats = { requests: 0, byStatus: {}, streams: 0, inFlight: 0, maxInFlight: 0, faults }
  const exchanges = new Set<Exchange>()

  function release(ex: Exchange): void {
    if (ex.done) return
    ex.done = true
    exchanges.delete(ex)
    stats.inFlight--
    for (const [timer, wake] of ex.sleeps) {
      clearTimeout(timer)
      wake(false)
    }
    ex.sleeps.clear()
  }

  /** Resolves false instead of true when the exchange ended meanwhile, so callers just return. */
  function sleep(ex: Exchange, ms: number): Promise<boolean> {
    if (ex.done) return Promise.resolve(false)
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          ex.sleeps.delete(timer)
          resolve(!ex.done)
        },
        Math.min(Math.max(0, ms), MAX_TIMER_MS),
      )
      ex.sleeps.set(timer, resolve)
    })
  }

  function writeHead(ex: Exchange, status: number, headers: http.OutgoingHttpHeaders): void {
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1
    ex.call.status = status
    ex.call.billed = status === 200
    ex.res.writeHead(status, headers)
  }

  function sendJson(ex: Exchange, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
    const payload = JSON.stringify(body)
    writeHead(ex, status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers })
    ex.res.end(payload)
  }

  function sendError(ex: Exchange, status: number, type: string, message: string, headers: http.OutgoingHttpHeaders = {}): void {
    sendJson(ex, status, { type: 'error', error: { type, message } }, headers)
  }

  function logCall(call: MockLlmCall): void {
    callLog.push(call)
    if (callLog.length > MAX_CALL_LOG) {
      callLog.shift()
      callsDropped += 1
    }
  }

  function pickFault(stream: boolean): MockFault {
    const next = sequence.shift()
    if (next !== undefined) return next
    if (rates.some(([, r]) => r > 0)) {
      const r = rng()
      let acc = 0
      for (const [kind, rate] of rates) {
        acc += rate
        if (r < acc) return kind
      }
    }
    return stream && rateMid > 0 && rng() < rateMid ? 'midstream' : 'ok'
  }

  function toolCallCount(body: MessagesBody): number {
    if (toolUse === false || !body.tools?.length) return 0
    let last: MessageParam | undefined
    for (const m of body.messages) if (m.role === 'user') last = m
    if (!last) return 0
    // A turn carrying tool results closes the tool loop: the model answers in text.
    if (Array.isArray(last.content) && last.content.some((b) => (b as { type?: unknown } | null)?.type === 'tool_result')) return 0
    const m = /\[tools:(\d+)\]/.exec(contentText(last.content, false))
    return m ? Math.min(Number(m[1]), 8) : 0
  }

  function toolBlocks(body: MessagesBody, n: number): Array<Record<string, unknown>> {
    const tools = body.tools ?? []
    return Array.from({ length: n }, (_, i) => ({
      type: 'tool_use',
      id: randomId('toolu_'),
      name: tools[i % tools.length]?.name ?? 'tool',
      input: { ...toolInput },
    }))
  }

  function messageShell(ex: Exchange, body: MessagesBody, inputTokens: number) {
    ex.call.inputTokens = inputTokens
    ex.call.cacheReadInputTokens = cache?.cache_read_input_tokens ?? 0
    ex.call.cacheCreationInputTokens = cache?.cache_creation_input_tokens ?? 0
    return {
      id: randomId('msg_'),
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [] as unknown[],
      stop_reason: null as string | null,
      stop_sequence: null,
      usage: { input_tokens: inputTokens, output_tokens: 0, ...cache },
    }
  }

  async function replyJson(ex: Exchange, body: MessagesBody, inputTokens: number, fault: MockFault): Promise<void> {
    if (fault !== 'hang' && !(await sleep(ex, latency()))) return
    // A non-streaming call has no stream to break, so a mid-stream fault shows as the overload it stands for.
    if (fault === 'midstream') return sendError(ex, 529, 'overloaded_error', 'Overloaded')
    const msg = messageShell(ex, body, inputTokens)
    const tools = toolCallCount(body)
    if (tools > 0) {
      msg.content = toolBlocks(body, tools)
      msg.stop_reason = 'tool_use'
      msg.usage.output_tokens = TOOL_USE_OUTPUT_TOKENS * tools
    } else {
      const n = Math.min(outputTokens, body.max_tokens)
      msg.content = [{ type: 'text', text: loremText(0, n) }]
      msg.stop_reason = n < outputTokens ? 'max_tokens' : 'end_turn'
      msg.usage.output_tokens = n
    }
    ex.call.outputTokens = msg.usage.output_tokens
    ex.call.completed = true
    sendJson(ex, 200, msg)
  }

  async function replyStream(ex: Exchange, body: MessagesBody, inputTokens: number, fault: MockFault): Promise<void> {
    const { res } = ex
    // Headers and message_start go out at once, as the real API does; TTFT is the wait for content.
    writeHead(ex, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    stats.streams++
    const shell = messageShell(ex, body, inputTokens)
    shell.usage.output_tokens = 1
    ex.call.outputTokens = 1
    res.write(sse('message_start', { type: 'message_start', message: shell }))
    const ttft = fault === 'hang' ? 0 : (opts.ttftMs ?? latency())
    if (!(await sleep(ex, ttft))) return

    const tools = toolCallCount(body)
    let outTokens: number
    let stopReason: string
    if (tools > 0) {
      let chunk = ''
      toolBlocks(body, tools).forEach((block, index) => {
        const { input, ...start } = block
        chunk += sse('content_block_start', { type: 'content_block_start', index, content_block: { ...start, input: {} } })
        chunk += sse('content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: JSON.stringify(input) },
        })
        chunk += sse('content_block_stop', { type: 'content_block_stop', index })
      })
      res.write(chunk)
      outTokens = TOOL_USE_OUTPUT_TOKENS * tools
      ex.call.outputTokens = outTokens
      stopReason = 'tool_use'
    } else {
      const n = Math.min(outputTokens, body.max_tokens)
      const failAfter = fault === 'midstream' ? Math.max(1, Math.floor(n / 2)) : Infinity
      res.write(
        sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
          sse('ping', { type: 'ping' }),
      )
      const start = Date.now()
      let sent = 0
      for (;;) {
        const elapsed = Date.now() - start
        const due = Math.min(n, failAfter, Math.floor((elapsed * tokensPerSecond) / 1000) + 1)
        if (due > sent) {
          res.write(
            sse('content_block_delta', {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'text_delta', text: loremText(sent, due) },
            }),
          )
          sent = due
          ex.call.outputTokens = Math.max(1, sent)
        }
        if (sent >= failAfter) {
          res.end(sse('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }))
          return
        }
        if (sent >= n) break
        const nextAt = (sent * 1000) / tokensPerSecond
        if (!(await sleep(ex, Math.max(STREAM_TICK_MIN_MS, nextAt - elapsed)))) return
      }
      res.write(sse('content_block_stop', { type: 'content_block_stop', index: 0 }))
      outTokens = n
      stopReason = n < outputTokens ? 'max_tokens' : 'end_turn'
    }
    res.end(
      sse('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason, stop_sequence: null },
        usage: { output_tokens: outTokens },
      }) + sse('message_stop', { type: 'message_stop' }),
    )
    ex.call.completed = true
  }

  async function handleMessages(req: IncomingMessage, ex: Exchange): Promise<void> {
    const { res } = ex
    res.setHeader('request-id', ex.call.requestId)
    if (opts.apiKey !== undefined) {
      const auth = req.headers.authorization
      const key = req.headers['x-api-key'] ?? (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined)
      if (key !== opts.apiKey) return sendError(ex, 401, 'authentication_error', 'invalid x-api-key')
    }
    const raw = await readBody(req)
    if (ex.done) return
    if (raw === null) return sendError(ex, 413, 'request_too_large', `Request exceeds the maximum size of ${MAX_BODY_BYTES} bytes`)
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      return sendError(ex, 400, 'invalid_request_error', 'body: invalid JSON')
    }
    const body = validate(parsed)
    if (typeof body === 'string') return sendError(ex, 400, 'invalid_request_error', body)
    ex.call.model = body.model
    ex.call.stream = body.stream

    const fault = pickFault(body.stream)
    if (fault !== 'ok') stats.faults[fault]++
    const noRetry: http.OutgoingHttpHeaders = req.headers['x-mock-no-retry'] !== undefined ? { 'x-should-retry': 'false' } : {}
    const retryAfter = { 'retry-after-ms': String(retryAfterMs), 'retry-after': String(Math.ceil(retryAfterMs / 1000)) }
    if (fault === '429')
      return sendError(ex, 429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', {
        ...retryAfter,
        ...noRetry,
      })
    if (fault === '529') return sendError(ex, 529, 'overloaded_error', 'Overloaded', noRetry)
    if (fault === '500') return sendError(ex, 500, 'api_error', 'Internal server error', noRetry)
    // A hang holds the request before any byte of the response, so only a client timeout ends it early.
    if (fault === 'hang' && !(await sleep(ex, hangMs))) return

    const inputTokens = Math.max(
      1,
      countWords(contentText(body.system, false)) + body.messages.reduce((s, m) => s + countWords(contentText(m.content, true)), 0),
    )
    if (body.stream) await replyStream(ex, body, inputTokens, fault)
    else await replyJson(ex, body, inputTokens, fault)
  }

  const snapshot = () => ({ ...stats, byStatus: { ...stats.byStatus }, faults: { ...faults } })
  const plainJson = (res: ServerResponse, status: number, body: unknown) => {
    const payload = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
    res.end(payload)
  }
  const notMessages = (res: ServerResponse, status: number, type: string, message: string) =>
    plainJson(res, status, { type: 'error', error: { type, message } })

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const read = req.method === 'GET' || req.method === 'HEAD'
    if (path === MOCK_LLM_ROUTES.healthz.path && read) return void plainJson(res, 200, { ok: true })
    if (path === MOCK_STATS_PATH && read) return void plainJson(res, 200, snapshot())
    if (path === MOCK_CALLS_PATH && read) return void plainJson(res, 200, { calls: callLog, dropped: callsDropped })
    if (path !== MOCK_LLM_ROUTES.messages.path) return void notMessages(res, 404, 'not_found_error', `No route for ${req.method} ${path}`)
    if (req.method !== 'POST') return void notMessages(res, 405, 'invalid_request_error', `Method ${req.method} not allowed`)

    stats.requests++
    stats.inFlight++
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
    const call: MockLlmCall = {
      requestId: randomId('req_'),
      status: 0,
      stream: false,
      model: null,
      billed: false,
      completed: false,
      inputTokens: 0,
      cacheReadInputTokens: 0,
      cacheCreationInputTokens: 0,
      outputTokens: 0,
    }
    logCall(call)
    const ex: Exchange = { res, sleeps: new Map(), done: false, call }
    exchanges.add(ex)
    // 'close' fires both after a full response and when the client goes away mid-wait.
    res.once('close', () => release(ex))
    handleMessages(req, ex).catch((err: unknown) => {
      if (ex.done) return
      if (res.headersSent) res.destroy()
      else sendError(ex, 500, 'api_error', `mock server error: ${err instanceof Error ? err.message : String(err)}`)
    })
  })

  const host = opts.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // A deep backlog so a load test opening thousands of connections at once is not refused.
    server.listen(opts.port ?? 0, host, 4096, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`

  let closing: Promise<void> | undefined
  return {
    url,
    port,
    stats: snapshot,
    calls: () => callLog.map((call) => ({ ...call })),
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const ex of [...exchanges]) {
          release(ex)
          ex.res.destroy()
        }
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}
