import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import express, { type NextFunction, type Request, type Response } from 'express'
import type pg from 'pg'
import type { Registry } from 'prom-client'
import { DEFAULT_TARGET } from '../core/config-schema.js'
import { sessionsClosedCounter } from '../metrics/warden-metrics.js'
import { closeServerSessions, endChatSession, getChatSession, insertChatSession, listChatMessages } from '../db/queries/chat.js'
import { poolScope } from '../pool/instrumented-pool.js'
import { countingFetch } from './attempts.js'
import { runOnce } from './db.js'
import { ChatError, type AbortReason } from './errors.js'
import { bodyOf, messageText, messagesLimit, optionalText, sessionId, undecodablePath } from './input.js'
import { PROVIDER, type AnthropicFactory } from './llm.js'
import { DEFAULT_PRICING, type Pricing } from './usage.js'
import { chatMetrics } from './metrics.js'
import { CHAT_ROUTES } from './routes.js'
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
  /** the Warden target whose database this is: the target label of its warden_sessions_closed_total. Default "default" */
  target?: string
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
  /**
   * How long a turn's write (and the cost rows of its LLM calls) is retried, with backoff, while
   * the database is unreachable (a restart, a failover); the client waits that long at most.
   * Past it the turn fails with 503 and a row that could not be written is reported lost. Default 10 s
   */
  writeRetryMs?: number
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
  // the closes of the chat path count in the one warden_sessions_closed_total, under its own table
  const closedCounter = sessionsClosedCounter(deps.registry)
  const closedLabels = (reason: 'disconnect' | 'shutdown') => ({
    target: deps.target ?? DEFAULT_TARGET,
    table: `${schema}.chat_sessions`,
    reason,
  })
  let closing = false
  let graceOver = false
  const ctx: TurnContext = {
    pool: deps.pool,
    schema,
    pattern: deps.pattern ?? 'release',
    client: deps.anthropic({
      fetch: countingFetch((errorType) =>
        metrics.attempts.inc({ gen_ai_provider_name: PROVIDER, gen_ai_request_model: deps.model, error_type: errorType }),
      ),
    }),
    model: deps.model,
    maxTokens: deps.maxTokens ?? 1024,
    system: deps.system,
    tools: deps.tools === false ? [] : CHAT_TOOLS,
    metrics,
    llmTimeoutMs: deps.llmTimeoutMs ?? 60_000,
    pricing: deps.pricing ?? DEFAULT_PRICING,
    maxToolRounds: deps.maxToolRounds ?? 3,
    // Past the shutdown grace nobody waits for the database any more: what cannot be written now is reported lost, before the process exits.
    writeRetry: { budgetMs: deps.writeRetryMs ?? 10_000, logger, giveUp: () => graceOver },
  }
  const inFlight = new Set<{ abort: (reason: AbortReason) => void; done: Promise<unknown> }>()

  const router = express.Router() as ChatRouter
  // Each request its own held-connection scope, so one request's checkouts are never blamed on another's LLM call.
  router.use((_req, _res, next) => poolScope(next))
  // Room for a maximal message and its JSON escaping; larger bodies are refused before parsing.
  router.use(express.json({ limit: maxMessageBytes * 2 + 4096 }))

  router.post(CHAT_ROUTES.create.path, async (req, res) => {
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

  router.get(CHAT_ROUTES.show.path, async (req, res) => {
    res.json({ session: await loadSession(sessionId(req.params.id, 'path id')) })
  })

  router.get(CHAT_ROUTES.messages.path, async (req, res) => {
    const session = await loadSession(sessionId(req.params.id, 'path id'))
    const limit = messagesLimit(req.query.limit)
    const { rows } = await runOnce(deps.pool, listChatMessages(schema, session.id, limit))
    res.json({ session, messages: rows })
  })

  router.post(CHAT_ROUTES.end.path, async (req, res) => {
    const id = sessionId(req.params.id, 'path id')
    const ended = (await runOnce<ChatSession>(deps.pool, endChatSession(schema, id, 'ended'))).rows[0]
    if (!ended) throw sessionEnded(await loadSession(id))
    res.json({ session: ended })
  })

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

  router.post(CHAT_ROUTES.turn.path, async (req, res) => {
    const id = sessionId(req.params.id, 'path id')
    // A non-streaming client that goes away does not cancel the turn: the reply is stored and GET shows it.
    const { turn } = track({ sessionId: id, text: messageText(bodyOf(req), maxMessageBytes), stream: false })
    res.json(await turn)
  })

  router.post(CHAT_ROUTES.stream.path, async (req, res) => {
    const id = sessionId(req.params.id, 'path id')
    const text = messageText(bodyOf(req), maxMessageBytes)
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
      if (closed.rowCount) closedCounter.inc(closedLabels('disconnect'))
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
    const message = (error as Error | null)?.message ?? ''
    if (!(error instanceof ChatError) && status === 400 && message.startsWith('Failed to decode param'))
      return sendError(res, undecodablePath(message))
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
    if (closed > 0) closedCounter.inc(closedLabels('shutdown'), closed)
    logger.info({ serverId, closed }, "closed this server's open chat sessions")
    return closed
  }

  async function shutdown(options: ShutdownOptions = {}): Promise<number> {
    closing = true
    const settled = Promise.all([...inFlight].map((entry) => entry.done))
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<'grace'>((resolve) => (timer = setTimeout(resolve, options.graceMs ?? 5000, 'grace')))
    if ((await Promise.race([settled, grace])) === 'grace') {
      graceOver = true
      for (const entry of inFlight) entry.abort('shutdown')
      await Promise.all([...inFlight].map((entry) => entry.done))
    }
    clearTimeout(timer)
    return options.closeSessions === false ? 0 : closeOwnSessions()
  }

  return Object.assign(router, { serverId, closeOwnSessions, shutdown })
}
