import type pg from 'pg'
import type Anthropic from '@anthropic-ai/sdk'
import type { ContentBlock, MessageParam, Tool, ToolUseBlock } from '@anthropic-ai/sdk/resources/messages'
import { getChatSession, insertLlmRequest, readChatTurn, writeChatTurn, type CostRow, type TurnWrite } from '../db/queries/chat.js'
import { inTransaction, run, runOnce } from './db.js'
import { ChatError, databaseError, type AbortReason } from './errors.js'
import { callModel, costUsd, LlmCallFailed, replyText, type ModelCallResult, type Pricing } from './llm.js'
import type { ChatMetrics } from './metrics.js'
import { runTool } from './tools.js'

export type ChatPattern = 'release' | 'hold'

/** A session as every response shows it: `{"session": {"id": …, …}}`. */
export interface ChatSession {
  id: string
  owner: string | null
  agentRole: string | null
  isActive: boolean
  startedAt: Date
  lastActivityAt: Date
  endedAt: Date | null
  durationSeconds: number | null
  endReason: string | null
  serverId: string | null
  turnCount: number
  inputTokens: number
  outputTokens: number
}

type StoredMessage = { role: 'user' | 'assistant' | 'tool'; content: unknown }
type TurnSnapshot = ChatSession & { history: StoredMessage[] }

export interface TurnContext {
  pool: pg.Pool
  schema: string
  pattern: ChatPattern
  client: Anthropic
  model: string
  maxTokens: number
  system?: string
  tools: Tool[]
  metrics: ChatMetrics
  llmTimeoutMs: number
  pricing: Pricing
  /** tool rounds per turn before the model must answer in text */
  maxToolRounds: number
  /** the error cost row of a failed call could not be written: never silent, billing must hear of it */
  onLostCost: (error: unknown, sessionId: string) => void
}

export interface TurnRequest {
  sessionId: string
  text: string
  stream: boolean
  signal: AbortSignal
  abortReason: () => AbortReason | undefined
  onConnect?: () => void
  onText?: (text: string) => void
}

export interface TurnResult {
  session: ChatSession
  reply: { role: 'assistant'; text: string; stopReason: string | null; content: ContentBlock[] }
  usage: { inputTokens: number; outputTokens: number; llmCalls: number }
}

interface Conversation {
  final: ModelCallResult
  messages: StoredMessage[]
  inputTokens: number
  outputTokens: number
  calls: number
}

export const sessionNotFound = (id: string) =>
  new ChatError(404, 'session_not_found', `no chat session with id ${JSON.stringify(id)}; create it first (POST /sessions)`)
export const sessionEnded = (s: ChatSession) =>
  new ChatError(
    409,
    'session_ended',
    `chat session ${JSON.stringify(s.id)} ended${s.endReason ? ` (${s.endReason})` : ''}; start a new session`,
  )

function assertOpen(id: string, snapshot: TurnSnapshot | undefined): TurnSnapshot {
  if (!snapshot) throw sessionNotFound(id)
  if (!snapshot.isActive) throw sessionEnded(snapshot)
  return snapshot
}

/** Stored history as the Messages API takes it: tool results travel in a user turn. */
const toParams = (history: StoredMessage[]): MessageParam[] =>
  history.map((m) => ({ role: m.role === 'assistant' ? 'assistant' : 'user', content: m.content as MessageParam['content'] }))

function costRow(ctx: TurnContext, call: ModelCallResult): CostRow {
  const { input_tokens: input, output_tokens: output } = call.message.usage
  return {
    requestId: call.requestId,
    operation: 'chat',
    model: ctx.model,
    inputTokens: input,
    outputTokens: output,
    costUsd: costUsd(ctx.pricing, input, output),
    latencyMs: call.latencyMs,
    status: 'ok',
    errorType: null,
  }
}

const recordCost = (ctx: TurnContext, sessionId: string, row: CostRow) => runOnce(ctx.pool, insertLlmRequest(ctx.schema, sessionId, row))

/**
 * The LLM part of a turn, with no connection of its own: calls the model, and while it asks for
 * tools runs them in parallel (each on its own connection) together with the cost row of the
 * call that asked (its own short transaction), then calls again with the results.
 */
async function converse(ctx: TurnContext, req: TurnRequest, snapshot: TurnSnapshot): Promise<Conversation> {
  const user: StoredMessage = { role: 'user', content: req.text }
  const messages: StoredMessage[] = [user]
  const params = [...toParams(snapshot.history), ...toParams([user])]
  let inputTokens = 0
  let outputTokens = 0
  for (let round = 0; ; round += 1) {
    const call = await callModel(
      {
        client: ctx.client,
        model: ctx.model,
        maxTokens: ctx.maxTokens,
        system: ctx.system,
        tools: ctx.tools,
        metrics: ctx.metrics,
        timeoutMs: ctx.llmTimeoutMs,
      },
      {
        messages: params,
        stream: req.stream,
        signal: req.signal,
        abortReason: req.abortReason,
        onConnect: req.onConnect,
        onText: req.onText,
      },
    )
    inputTokens += call.message.usage.input_tokens
    outputTokens += call.message.usage.output_tokens
    const uses = call.message.content.filter((b): b is ToolUseBlock => b.type === 'tool_use')
    if (call.message.stop_reason !== 'tool_use' || uses.length === 0 || round >= ctx.maxToolRounds) {
      // A tool_use left without its result would make the API refuse every later turn of the session.
      const answer = call.message.content.filter((b) => b.type !== 'tool_use')
      messages.push({
        role: 'assistant',
        content: answer.length > 0 ? answer : [{ type: 'text', text: '(no answer: tool rounds exhausted)' }],
      })
      return { final: call, messages, inputTokens, outputTokens, calls: round + 1 }
    }
    const assistant: StoredMessage = { role: 'assistant', content: call.message.content }
    messages.push(assistant)
    const [results] = await Promise.all([
      Promise.all(uses.map((use) => runTool(ctx.pool, ctx.schema, req.sessionId, use))),
      recordCost(ctx, req.sessionId, costRow(ctx, call)),
    ])
    const tool: StoredMessage = { role: 'tool', content: results }
    messages.push(tool)
    params.push(...toParams([assistant, tool]))
  }
}

function turnWrite(ctx: TurnContext, snapshot: TurnSnapshot, convo: Conversation): TurnWrite {
  return {
    sessionId: snapshot.id,
    expectedTurnCount: snapshot.turnCount,
    inputTokens: convo.inputTokens,
    outputTokens: convo.outputTokens,
    messages: convo.messages,
    cost: costRow(ctx, convo.final),
  }
}

/**
 * The write matched no session: it ended, or another turn of it landed since the read. The
 * call was made and billed, so its cost row is written on its own; the turn is not.
 */
async function lostWrite(ctx: TurnContext, write: TurnWrite): Promise<never> {
  await recordCost(ctx, write.sessionId, write.cost)
  const now = (await runOnce<ChatSession>(ctx.pool, getChatSession(ctx.schema, write.sessionId))).rows[0]
  if (!now) throw sessionNotFound(write.sessionId)
  if (!now.isActive) throw sessionEnded(now)
  throw new ChatError(
    409,
    'turn_conflict',
    `another turn of chat session ${JSON.stringify(now.id)} was written while this one waited for the LLM; send the message again`,
  )
}

function result(session: ChatSession, convo: Conversation): TurnResult {
  const { message } = convo.final
  return {
    session,
    reply: { role: 'assistant', text: replyText(message), stopReason: message.stop_reason, content: message.content },
    usage: { inputTokens: convo.inputTokens, outputTokens: convo.outputTokens, llmCalls: convo.calls },
  }
}

/** Release before call: read (one statement), no connection during the LLM call, write (one statement). */
async function releaseTurn(ctx: TurnContext, req: TurnRequest): Promise<TurnResult> {
  const read = await runOnce<TurnSnapshot>(ctx.pool, readChatTurn(ctx.schema, req.sessionId, false))
  const snapshot = assertOpen(req.sessionId, read.rows[0])
  const convo = await converse(ctx, req, snapshot)
  const write = turnWrite(ctx, snapshot, convo)
  const written = (await runOnce<ChatSession>(ctx.pool, writeChatTurn(ctx.schema, write))).rows[0]
  return written ? result(written, convo) : lostWrite(ctx, write)
}

/**
 * The anti-pattern, for comparison only: one transaction from the read to the write, the
 * session row locked and the connection checked out for the whole LLM call. Pool capacity
 * then caps throughput at pool max / LLM latency, and pg_stat_activity shows the backends
 * "idle in transaction" while the model thinks.
 */
async function holdTurn(ctx: TurnContext, req: TurnRequest): Promise<TurnResult> {
  try {
    return await inTransaction(ctx.pool, async (client) => {
      const snapshot = assertOpen(req.sessionId, (await run<TurnSnapshot>(client, readChatTurn(ctx.schema, req.sessionId, true))).rows[0])
      const convo = await converse(ctx, req, snapshot)
      const written = (await run<ChatSession>(client, writeChatTurn(ctx.schema, turnWrite(ctx, snapshot, convo)))).rows[0]
      if (!written) throw new ChatError(409, 'turn_conflict', 'the locked session changed under its own lock')
      return result(written, convo)
    })
  } catch (error) {
    throw error instanceof LlmCallFailed || error instanceof ChatError ? error : databaseError(error)
  }
}

/**
 * One turn of a session. A failed LLM call writes nothing of the turn (no user message without
 * its reply) but does get its llm_requests row (status error), in its own short transaction
 * after any connection of the turn is released, so failures show in billing and ops queries.
 */
export async function runTurn(ctx: TurnContext, req: TurnRequest): Promise<TurnResult> {
  try {
    return ctx.pattern === 'hold' ? await holdTurn(ctx, req) : await releaseTurn(ctx, req)
  } catch (error) {
    if (!(error instanceof LlmCallFailed)) throw error
    const { failure, latencyMs } = error
    const row: CostRow = {
      requestId: failure.requestId,
      operation: 'chat',
      model: ctx.model,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: 0,
      latencyMs,
      status: 'error',
      errorType: failure.errorType,
    }
    await recordCost(ctx, req.sessionId, row).catch((lost: unknown) => ctx.onLostCost(lost, req.sessionId))
    throw failure.chatError
  }
}
