import type pg from 'pg'
import type Anthropic from '@anthropic-ai/sdk'
import type { ContentBlock, MessageParam, Tool, ToolUseBlock } from '@anthropic-ai/sdk/resources/messages'
import { getChatSession, readChatTurn, recordedCalls, writeChatTurn, type CostRow, type TurnWrite } from '../db/queries/chat.js'
import { inTransaction, run, runOnce } from './db.js'
import { ChatError, databaseError, type AbortReason } from './errors.js'
import { CostLedger, retryingWrite, type WriteRetry } from './ledger.js'
import { callModel, LlmCallFailed, PROVIDER, replyText, type ModelCallResult } from './llm.js'
import type { ChatMetrics } from './metrics.js'
import { runTool } from './tools.js'
import { addUsage, NO_USAGE, totalInputTokens, type CallUsage, type Pricing } from './usage.js'

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
  /** how the turn's write and its cost rows are retried while the database is away, and where that is logged */
  writeRetry: WriteRetry
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
  /** inputTokens is the whole prompt over the turn's calls, cached tokens included (they are also given on their own) */
  usage: { inputTokens: number; cacheReadInputTokens: number; cacheCreationInputTokens: number; outputTokens: number; llmCalls: number }
}

interface Conversation {
  final: ModelCallResult
  messages: StoredMessage[]
  usage: CallUsage
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

/**
 * The LLM part of a turn, with no connection of its own: calls the model, and while it asks for
 * tools runs them in parallel (each on its own connection) together with the cost row of the
 * call that asked (its own short transaction), then calls again with the results.
 */
async function converse(ctx: TurnContext, req: TurnRequest, snapshot: TurnSnapshot, ledger: CostLedger): Promise<Conversation> {
  const user: StoredMessage = { role: 'user', content: req.text }
  const messages: StoredMessage[] = [user]
  const params = [...toParams(snapshot.history), ...toParams([user])]
  let usage = NO_USAGE
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
    usage = addUsage(usage, call.usage)
    const cost = ledger.add({ requestId: call.requestId, usage: call.usage, latencyMs: call.latencyMs, status: 'ok', errorType: null })
    const uses = call.message.content.filter((b): b is ToolUseBlock => b.type === 'tool_use')
    if (call.message.stop_reason !== 'tool_use' || uses.length === 0 || round >= ctx.maxToolRounds) {
      // A tool_use left without its result would make the API refuse every later turn of the session.
      const answer = call.message.content.filter((b) => b.type !== 'tool_use')
      messages.push({
        role: 'assistant',
        content: answer.length > 0 ? answer : [{ type: 'text', text: '(no answer: tool rounds exhausted)' }],
      })
      return { final: call, messages, usage, calls: round + 1 }
    }
    const assistant: StoredMessage = { role: 'assistant', content: call.message.content }
    messages.push(assistant)
    const [results] = await Promise.all([
      Promise.all(uses.map((use) => runTool(ctx.pool, ctx.schema, req.sessionId, use))),
      ledger.tryRecord(cost),
    ])
    const tool: StoredMessage = { role: 'tool', content: results }
    messages.push(tool)
    params.push(...toParams([assistant, tool]))
  }
}

function turnWrite(snapshot: TurnSnapshot, convo: Conversation, costs: CostRow[]): TurnWrite {
  return {
    sessionId: snapshot.id,
    expectedTurnCount: snapshot.turnCount,
    inputTokens: totalInputTokens(convo.usage),
    outputTokens: convo.usage.outputTokens,
    messages: convo.messages,
    costs,
  }
}

/** The write matched no session: it ended, or another turn of it landed since the read. The turn is not written. */
async function refusedWrite(ctx: TurnContext, sessionId: string): Promise<never> {
  const now = (await runOnce<ChatSession>(ctx.pool, getChatSession(ctx.schema, sessionId))).rows[0]
  if (!now) throw sessionNotFound(sessionId)
  if (!now.isActive) throw sessionEnded(now)
  throw new ChatError(
    409,
    'turn_conflict',
    `another turn of chat session ${JSON.stringify(now.id)} was written while this one waited for the LLM; send the message again`,
  )
}

function result(session: ChatSession, convo: Conversation): TurnResult {
  const { message } = convo.final
  const { cacheReadInputTokens, cacheCreationInputTokens, outputTokens } = convo.usage
  return {
    session,
    reply: { role: 'assistant', text: replyText(message), stopReason: message.stop_reason, content: message.content },
    usage: {
      inputTokens: totalInputTokens(convo.usage),
      cacheReadInputTokens,
      cacheCreationInputTokens,
      outputTokens,
      llmCalls: convo.calls,
    },
  }
}

/**
 * Release before call: read (one statement), no connection during the LLM call, write (one
 * statement, the cost rows in it). The write is retried while the database is briefly away; a
 * retry that matches nothing checks whether an earlier attempt committed (its final call's row
 * is there) before calling the turn refused.
 */
async function releaseTurn(ctx: TurnContext, req: TurnRequest, ledger: CostLedger): Promise<TurnResult> {
  const read = await runOnce<TurnSnapshot>(ctx.pool, readChatTurn(ctx.schema, req.sessionId, false))
  const snapshot = assertOpen(req.sessionId, read.rows[0])
  const convo = await converse(ctx, req, snapshot, ledger)
  const costs = ledger.pending()
  const finalCall = costs.at(-1)!.callId
  const written = await retryingWrite('turn', ctx.writeRetry, async (attempt) => {
    const row = (await runOnce<ChatSession>(ctx.pool, writeChatTurn(ctx.schema, turnWrite(snapshot, convo, costs)))).rows[0]
    if (row || attempt === 1) return row
    const landed = (await runOnce(ctx.pool, recordedCalls(ctx.schema, [finalCall]))).rows.length > 0
    return landed ? (await runOnce<ChatSession>(ctx.pool, getChatSession(ctx.schema, req.sessionId))).rows[0] : undefined
  })
  if (!written) return refusedWrite(ctx, req.sessionId)
  ledger.markRecorded(costs)
  return result(written, convo)
}

/**
 * The anti-pattern, for comparison only: one transaction from the read to the write, the
 * session row locked and the connection checked out for the whole LLM call. Pool capacity
 * then caps throughput at pool max / LLM latency, and pg_stat_activity shows the backends
 * "idle in transaction" while the model thinks.
 */
async function holdTurn(ctx: TurnContext, req: TurnRequest, ledger: CostLedger): Promise<TurnResult> {
  try {
    const { written, convo, costs } = await inTransaction(ctx.pool, async (client) => {
      const snapshot = assertOpen(req.sessionId, (await run<TurnSnapshot>(client, readChatTurn(ctx.schema, req.sessionId, true))).rows[0])
      const convo = await converse(ctx, req, snapshot, ledger)
      const costs = ledger.pending()
      const written = (await run<ChatSession>(client, writeChatTurn(ctx.schema, turnWrite(snapshot, convo, costs)))).rows[0]
      if (!written) throw new ChatError(409, 'turn_conflict', 'the locked session changed under its own lock')
      return { written, convo, costs }
    })
    // Only a COMMIT makes them recorded: a connection lost with the LLM call's answer in hand rolls them back.
    ledger.markRecorded(costs)
    return result(written, convo)
  } catch (error) {
    throw error instanceof LlmCallFailed || error instanceof ChatError ? error : databaseError(error)
  }
}

/**
 * One turn of a session. Whatever happens, every LLM call the turn made ends with exactly one
 * llm_requests row (or a loud lost-cost report, see CostLedger): with the turn's write when it
 * lands, else on its own after the turn failed. A failed LLM call writes nothing of the turn
 * (no user message without its reply) but gets its row (status error; a stream cut short with
 * the tokens it had streamed), after any connection of the turn is released.
 */
export async function runTurn(ctx: TurnContext, req: TurnRequest): Promise<TurnResult> {
  const ledger = new CostLedger({
    pool: ctx.pool,
    schema: ctx.schema,
    sessionId: req.sessionId,
    model: ctx.model,
    provider: PROVIDER,
    pricing: ctx.pricing,
    metrics: ctx.metrics,
    retry: ctx.writeRetry,
  })
  try {
    return ctx.pattern === 'hold' ? await holdTurn(ctx, req, ledger) : await releaseTurn(ctx, req, ledger)
  } catch (error) {
    if (error instanceof LlmCallFailed) {
      ledger.add({
        requestId: error.requestId,
        usage: error.usage,
        latencyMs: error.latencyMs,
        status: 'error',
        errorType: error.failure.errorType,
      })
    }
    await ledger.settle()
    throw error instanceof LlmCallFailed ? error.failure.chatError : error
  }
}
