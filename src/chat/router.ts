import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import express, { type NextFunction, type Request, type Response } from 'express'
import type pg from 'pg'
import type { Registry } from 'prom-client'
import { closeServerSessions, endChatSession, getChatSession, insertChatSession, listChatMessages } from '../db/queries/chat.js'
import { poolScope } from '../pool/instrumented-pool.js'
import { runOnce } from './db.js'
import { ChatError, type AbortReason } from './errors.js'
import { DEFAULT_PRICING, type AnthropicFactory, type Pricing } from './llm.js'
import { chatMetrics } from './metrics.js'
import { CHAT_TOOLS } from './tools.js'
import { runTurn, sessionEnded, sessionNotFound, type ChatPattern, type ChatSession, type TurnContext, type TurnResult } from './turn.js'

/** pino-compatible; `pino()` can be passed as is. */
export interface ChatLogger {
  info(details: object, message: string): void
  warn(details: object, message: string): void
  error(details: object, message: string): void
}

const silentLogger: ChatLogger = { info: () => undefined, warn: () => undefined, error: () => undefined }

export interface ChatRouterDeps {
  /** an instrumented pool (src/pool): its held-during-LLM-call counter is how release proves itself */
  pool: pg.Pool
  /** Warden's schema, where migration 3 made chat_sessions, chat_messages and llm_requests. Default 'warden' */
  schema?: string
  /** called once; see anthropicFactory() */
  anthropic: AnthropicFactory
  model: string
  pattern?: ChatPattern
  registry: Registry
  logger?: ChatLogger
  /** written to the sessions this router opens; shutdown closes exactly those. Default host:pid:random */
  serverId?: string
  maxTokens?: number
  system?: string
  /** deadline of one LLM call, streaming included. Default 60 s */
  llmTimeoutMs?: number
  /** user message limit in UTF-8 bytes. Default 32 KiB */
  maxMessageBytes?: number
  /** offer the tools to the model (it asks for them on `[tools:N]` with the mock). Default true */
  tools?: boolean
  maxToolRounds?: number
  pricing?: Pricing
}

export interface ChatRouter extends express.Router {
  readonly serverId: string
  /** closes every open session this router opened (end_reason 'shutdown'); returns how many */
  closeOwnSessions(): Promise<number>
  /**
   * For SIGTERM: refuses new turns (503), lets turns in flight finish for up to graceMs, cancels
   * the rest, then closes this router's open sessions (unless closeSessions is false: a rolling
   * restart whose sessions another instance continues). Returns how many it closed.
   */
  shutdown(options?: ShutdownOptions): Promise<number>
}

export interface ShutdownOptions {
  /** default 5000 */
  graceMs?: number
  /** default true */
  closeSessions?: boolean
}

const MAX_ID_LENGTH = 200
const MAX_LABEL_LENGTH = 200
// eslint-disable-next-line no-control-regex -- ids must not carry control characters
const ID_PATTERN = /^[^\u0000-\u001f\u007f]+$/

function optionalText(body: Record<string, unknown>, key: string): string | null {
  const value = body[key]
  if (value === undefined || value === null) return null
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_LABEL_LENGTH)
    throw new ChatError(400, 'invalid_request', `${key}: expected a non-empty string of at most ${MAX_LABEL_LENGTH} characters`)
  return value
}

function bodyOf(req: Request): Record<string, unknown> {
  const body: unknown = req.body
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body))
    throw new ChatError(400, 'invalid_request', 'expected a JSON object as the request body')
  return body as Record<string, unknown>
}

function sessionId(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH || !ID_PATTERN.test(value)) {
    throw new ChatError(400, 'invalid_request', `${where}: expected a session id of 1 to ${MAX_ID_LENGTH} printable characters`)
  }
  return value
}

function sendError(res: Response, error: ChatError): void {
  res.status(error.status).json(error.toBody())
}

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

/**
 * The reference chat path as an express Router (mount it anywhere, e.g. app.use('/chat', …)).
 * It follows every rule of PROBLEMS.md: release before call, session-per-operation for tools
 * and cost rows, client ids win and one id shape everywhere, sessions only in PostgreSQL, and
 * sessions closed on explicit end, on disconnect mid-stream and on shutdown.
 */
export function createChatRouter(deps: ChatRouterDeps): ChatRouter {
  const schema = deps.schema ?? 'warden'
  const serverId = deps.serverId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  const logger = deps.logger ?? silentLogger
  const maxMessageBytes = deps.maxMessageBytes ?? 32 * 1024
  const metrics = chatMetrics(deps.registry)
  const ctx: TurnContext = {
    pool: deps.pool,
    schema,
    pattern: deps.pattern ?? 'release',
    client: deps.anthropic(),
    model: deps.model,
    maxTokens: deps.maxTokens ?? 1024,
    system: deps.system,
    tools: deps.tools === false ? [] : CHAT_TOOLS,
    metrics,
    llmTimeoutMs: deps.llmTimeoutMs ?? 60_000,
    pricing: deps.pricing ?? DEFAULT_PRICING,
    maxToolRounds: deps.maxToolRounds ?? 3,
    onLostCost: (error, sessionId) => logger.error({ err: error, sessionId }, 'could not record the llm_requests row of a failed LLM call'),
  }
  const inFlight = new Set<{ abort: (reason: AbortReason) => void; done: Promise<unknown> }>()
  let closing = false

  const router = express.Router() as ChatRouter
  // Each request its own held-connection scope, so one request's checkouts are never blamed on another's LLM call.
  router.use((_req, _res, next) => poolScope(next))
  // Room for a maximal message and its JSON escaping; larger bodies are refused before parsing.
  router.use(express.json({ limit: maxMessageBytes * 2 + 4096 }))

  router.post('/sessions', async (req, res) => {
    const body = bodyOf(req)
    const id = body.id === undefined || body.id === null ? randomUUID() : sessionId(body.id, 'id')
    const created = await runOnce<ChatSession>(
      deps.pool,
      insertChatSession(schema, { id, owner: optionalText(body, 'owner'), agentRole: optionalText(body, 'agentRole'), serverId }),
    )
    const session = created.rows[0]
    if (!session)
      throw new ChatError(
        409,
        'session_exists',
        `a chat session with id ${JSON.stringify(id)} already exists; continue it with POST /sessions/{id}/messages`,
      )
    res.status(201).json({ session })
  })

  async function loadSession(id: string): Promise<ChatSession> {
    const session = (await runOnce<ChatSession>(deps.pool, getChatSession(schema, id))).rows[0]
    if (!session) throw sessionNotFound(id)
    return session
  }

  router.get('/sessions/:id', async (req, res) => {
    res.json({ session: await loadSession(sessionId(req.params.id, 'path')) })
  })

  router.get('/sessions/:id/messages', async (req, res) => {
    const session = await loadSession(sessionId(req.params.id, 'path'))
    const limit = Math.min(Math.max(Number(req.query.limit ?? 1000) || 1000, 1), 10_000)
    const { rows } = await runOnce(deps.pool, listChatMessages(schema, session.id, limit))
    res.json({ session, messages: rows })
  })

  router.post('/sessions/:id/end', async (req, res) => {
    const id = sessionId(req.params.id, 'path')
    const ended = (await runOnce<ChatSession>(deps.pool, endChatSession(schema, id, 'ended'))).rows[0]
    if (!ended) throw sessionEnded(await loadSession(id))
    res.json({ session: ended })
  })

  function messageText(req: Request): string {
    const message = bodyOf(req).message
    if (typeof message !== 'string' || message.trim() === '')
      throw new ChatError(400, 'invalid_request', 'message: expected a non-empty string')
    const bytes = Buffer.byteLength(message, 'utf8')
    if (bytes > maxMessageBytes) throw new ChatError(413, 'message_too_large', `message: ${bytes} bytes; the limit is ${maxMessageBytes}`)
    return message
  }

  /** Registers a turn so shutdown can wait for it or cancel it. */
  function track(req: Omit<Parameters<typeof runTurn>[1], 'signal' | 'abortReason'>): {
    turn: Promise<TurnResult>
    abort: (reason: AbortReason) => void
  } {
    if (closing) throw new ChatError(503, 'shutting_down', 'the server is shutting down; send the message again to another instance')
    const controller = new AbortController()
    let reason: AbortReason | undefined
    const abort = (why: AbortReason) => {
      reason ??= why
      controller.abort()
    }
    const turn = runTurn(ctx, { ...req, signal: controller.signal, abortReason: () => reason })
    const entry = { abort, done: turn.catch(() => undefined) }
    inFlight.add(entry)
    void entry.done.finally(() => inFlight.delete(entry))
    return { turn, abort }
  }

  router.post('/sessions/:id/messages', async (req, res) => {
    const id = sessionId(req.params.id, 'path')
    // A non-streaming client that goes away does not cancel the turn: the reply is stored and GET shows it.
    const { turn } = track({ sessionId: id, text: messageText(req), stream: false })
    res.json(await turn)
  })

  router.post('/sessions/:id/messages/stream', async (req, res) => {
    const id = sessionId(req.params.id, 'path')
    const text = messageText(req)
    let disconnected = false
    const openStream = () => {
      if (res.headersSent) return
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      })
      res.flushHeaders()
    }
    const { turn, abort } = track({
      sessionId: id,
      text,
      stream: true,
      onConnect: openStream,
      onText: (delta) => res.write(sse('delta', { text: delta })),
    })
    res.on('close', () => {
      if (res.writableFinished) return
      disconnected = true
      abort('client_disconnect')
    })
    try {
      const done = await turn
      openStream()
      res.end(sse('done', done))
    } catch (error) {
      // Before the first byte the client gets a plain JSON error with its status; after it, an error event.
      if (!res.headersSent) throw error
      res.end(sse('error', logged(error).toBody()))
    } finally {
      if (disconnected) await closeOnDisconnect(id)
    }
  })

  /** The post-mortem's websocket bug, fixed: a client that goes away mid-stream ends its session row too. */
  async function closeOnDisconnect(id: string): Promise<void> {
    try {
      const closed = await runOnce(deps.pool, endChatSession(schema, id, 'disconnect'))
      if (closed.rowCount) metrics.sessionsClosed.inc({ reason: 'disconnect' })
    } catch (error) {
      logger.error({ err: error, sessionId: id }, 'could not close a session after its client disconnected')
    }
  }

  router.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error)
    const type = (error as { type?: string } | null)?.type
    if (type === 'entity.parse.failed') return sendError(res, new ChatError(400, 'invalid_json', 'the request body is not valid JSON'))
    if (type === 'entity.too.large')
      return sendError(res, new ChatError(413, 'payload_too_large', `the request body exceeds ${maxMessageBytes * 2 + 4096} bytes`))
    const status = (error as { status?: number } | null)?.status
    if (!(error instanceof ChatError) && typeof status === 'number' && status >= 400 && status < 500)
      return sendError(res, new ChatError(status, 'invalid_request', (error as Error).message))
    sendError(res, logged(error))
  })

  /** The client's error; what only the operator should see goes to the log. */
  function logged(error: unknown): ChatError {
    const chatError =
      error instanceof ChatError ? error : new ChatError(500, 'internal_error', 'internal error; see the server log', { cause: error })
    if (chatError.status >= 500 && chatError.cause !== undefined)
      logger.error({ err: chatError.cause, code: chatError.code }, chatError.message)
    return chatError
  }

  async function closeOwnSessions(): Promise<number> {
    const closed = (await runOnce(deps.pool, closeServerSessions(schema, serverId, 'shutdown'))).rowCount ?? 0
    if (closed > 0) metrics.sessionsClosed.inc({ reason: 'shutdown' }, closed)
    logger.info({ serverId, closed }, "closed this server's open chat sessions")
    return closed
  }

  async function shutdown(options: ShutdownOptions = {}): Promise<number> {
    closing = true
    const settled = Promise.all([...inFlight].map((entry) => entry.done))
    let timer: NodeJS.Timeout | undefined
    const graceOver = new Promise<'grace'>((resolve) => (timer = setTimeout(resolve, options.graceMs ?? 5000, 'grace')))
    if ((await Promise.race([settled, graceOver])) === 'grace') {
      for (const entry of inFlight) entry.abort('shutdown')
      await Promise.all([...inFlight].map((entry) => entry.done))
    }
    clearTimeout(timer)
    return options.closeSessions === false ? 0 : closeOwnSessions()
  }

  return Object.assign(router, { serverId, closeOwnSessions, shutdown })
}
