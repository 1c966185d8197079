import { quoteIdent, sql } from '../sql.js'

/**
 * Statements of the reference chat path (src/chat). Each turn costs two of them in release
 * mode: one read and one write, each its own transaction, so a connection is checked out for
 * one round trip on either side of the LLM call and never across it.
 */

const t = (schema: string, table: 'chat_sessions' | 'chat_messages' | 'llm_requests') => `${quoteIdent(schema)}.${table}`

/** The session as every response shows it (camelCase; tokens as numbers, not int8 strings). */
const SESSION_COLUMNS = `s.id, s.owner, s.agent_role AS "agentRole", s.is_active AS "isActive", s.started_at AS "startedAt",
  s.last_activity_at AS "lastActivityAt", s.ended_at AS "endedAt", s.duration_seconds AS "durationSeconds",
  s.end_reason AS "endReason", s.server_id AS "serverId", s.turn_count AS "turnCount",
  s.input_tokens::float8 AS "inputTokens", s.output_tokens::float8 AS "outputTokens"`

/** Closing a session: the same four columns for an explicit end, a disconnect and a shutdown. */
const CLOSE_SET = `is_active = false, ended_at = now(), duration_seconds = EXTRACT(EPOCH FROM now() - started_at)::float8, end_reason = $2`

export interface NewChatSession {
  id: string
  owner: string | null
  agentRole: string | null
  serverId: string
}

/** ON CONFLICT DO NOTHING: a duplicate id returns no row (the caller answers 409), never a second session. */
export const insertChatSession = (schema: string, s: NewChatSession) =>
  sql(
    'chat.insertSession',
    `INSERT INTO ${t(schema, 'chat_sessions')} AS s (id, owner, agent_role, server_id)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO NOTHING
     RETURNING ${SESSION_COLUMNS}`,
    [s.id, s.owner, s.agentRole, s.serverId],
  )

export const getChatSession = (schema: string, id: string) =>
  sql('chat.getSession', `SELECT ${SESSION_COLUMNS} FROM ${t(schema, 'chat_sessions')} s WHERE s.id = $1`, [id])

export const listChatMessages = (schema: string, id: string, limit: number) =>
  sql(
    'chat.listMessages',
    `SELECT id::float8 AS id, role, content, created_at AS "createdAt"
       FROM ${t(schema, 'chat_messages')} WHERE session_id = $1 ORDER BY id LIMIT $2`,
    [id, limit],
  )

/**
 * The session and its history in one statement, so both come from one snapshot without an
 * explicit transaction. `forUpdate` is the hold pattern's read: it locks the session row until
 * the caller's transaction ends, which in that pattern is after the LLM call.
 */
export const readChatTurn = (schema: string, id: string, forUpdate: boolean) =>
  sql(
    forUpdate ? 'chat.readTurnForUpdate' : 'chat.readTurn',
    `SELECT ${SESSION_COLUMNS},
            (SELECT COALESCE(jsonb_agg(jsonb_build_object('role', m.role, 'content', m.content) ORDER BY m.id), '[]'::jsonb)
               FROM ${t(schema, 'chat_messages')} m WHERE m.session_id = s.id) AS history
       FROM ${t(schema, 'chat_sessions')} s
      WHERE s.id = $1${forUpdate ? '\n      FOR UPDATE OF s' : ''}`,
    [id],
  )

export interface CostRow {
  /** minted by the chat path before the call: the row's identity across retried writes (unique) */
  callId: string
  requestId: string | null
  operation: string
  model: string
  /** as the provider reports it: cached tokens are in the two cache columns */
  inputTokens: number
  cacheReadInputTokens: number
  cacheCreationInputTokens: number
  outputTokens: number
  costUsd: number
  latencyMs: number
  status: 'ok' | 'error'
  errorType: string | null
}

const COST_COLUMNS = `call_id, request_id, operation, model, input_tokens, cache_read_input_tokens, cache_creation_input_tokens,
  output_tokens, cost_usd, latency_ms, status, error_type`

/** The cost rows of a statement travel as one jsonb array, so one statement writes any number of them. */
const COST_RECORDSET = `x(call_id uuid, request_id text, operation text, model text, input_tokens int, cache_read_input_tokens int,
  cache_creation_input_tokens int, output_tokens int, cost_usd numeric, latency_ms int, status text, error_type text)`

const costJson = (rows: CostRow[]) =>
  JSON.stringify(
    rows.map((c) => ({
      call_id: c.callId,
      request_id: c.requestId,
      operation: c.operation,
      model: c.model,
      input_tokens: c.inputTokens,
      cache_read_input_tokens: c.cacheReadInputTokens,
      cache_creation_input_tokens: c.cacheCreationInputTokens,
      output_tokens: c.outputTokens,
      cost_usd: c.costUsd,
      latency_ms: Math.round(c.latencyMs),
      status: c.status,
      error_type: c.errorType,
    })),
  )

/**
 * Cost rows on their own (a tool round's call, a failed call, a turn that could not be written),
 * in one short transaction. ON CONFLICT (call_id): a retry after a COMMIT whose answer was lost
 * finds the row already there, so a call never gets two.
 */
export const insertLlmRequests = (schema: string, sessionId: string, rows: CostRow[]) =>
  sql(
    'chat.insertLlmRequests',
    `INSERT INTO ${t(schema, 'llm_requests')} (session_id, ${COST_COLUMNS})
     SELECT $1, ${COST_COLUMNS} FROM jsonb_to_recordset($2::jsonb) AS ${COST_RECORDSET}
     ON CONFLICT (call_id) DO NOTHING`,
    [sessionId, costJson(rows)],
  )

/** Which of these calls already have their row: tells a retried turn write whether its first attempt committed. */
export const recordedCalls = (schema: string, callIds: string[]) =>
  sql('chat.recordedCalls', `SELECT call_id AS "callId" FROM ${t(schema, 'llm_requests')} WHERE call_id = ANY($1::uuid[])`, [callIds])

export interface TurnWrite {
  sessionId: string
  /** turn_count read before the LLM call: the write applies only if no other turn landed meanwhile */
  expectedTurnCount: number
  /** the whole prompt, cached tokens included, over the turn's calls */
  inputTokens: number
  outputTokens: number
  /** the user message, tool exchanges and the reply, in order */
  messages: Array<{ role: 'user' | 'assistant' | 'tool'; content: unknown }>
  /** the turn's cost rows not written yet (the final call's, and any a tool round could not write) */
  costs: CostRow[]
}

/**
 * The whole turn in one statement (one transaction, one round trip): session counters, the
 * messages and the cost rows. Data-modifying CTEs all run or none does; when the session
 * ended or another turn landed since the read, the UPDATE matches nothing, so nothing at all
 * is written and the statement returns no row.
 */
export const writeChatTurn = (schema: string, w: TurnWrite) =>
  sql(
    'chat.writeTurn',
    `WITH s AS (
       UPDATE ${t(schema, 'chat_sessions')}
          SET turn_count = turn_count + 1, input_tokens = input_tokens + $3, output_tokens = output_tokens + $4, last_activity_at = now()
        WHERE id = $1 AND is_active AND turn_count = $2
       RETURNING *
     ), m AS (
       INSERT INTO ${t(schema, 'chat_messages')} (session_id, role, content)
       SELECT s.id, x.msg->>'role', x.msg->'content'
         FROM s, jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(msg, ord)
        ORDER BY x.ord
       RETURNING 1
     ), r AS (
       INSERT INTO ${t(schema, 'llm_requests')} (session_id, ${COST_COLUMNS})
       SELECT s.id, ${COST_COLUMNS.replace(/(\w+)/g, 'x.$1')} FROM s, jsonb_to_recordset($6::jsonb) AS ${COST_RECORDSET}
       ON CONFLICT (call_id) DO NOTHING
       RETURNING 1
     )
     SELECT ${SESSION_COLUMNS} FROM s`,
    [w.sessionId, w.expectedTurnCount, w.inputTokens, w.outputTokens, JSON.stringify(w.messages), costJson(w.costs)],
  )

export const endChatSession = (schema: string, id: string, reason: string) =>
  sql(
    'chat.endSession',
    `UPDATE ${t(schema, 'chat_sessions')} AS s SET ${CLOSE_SET} WHERE s.id = $1 AND s.is_active RETURNING ${SESSION_COLUMNS}`,
    [id, reason],
  )

/** Shutdown: every still-open session this server opened, in one statement. */
export const closeServerSessions = (schema: string, serverId: string, reason: string) =>
  sql('chat.closeServerSessions', `UPDATE ${t(schema, 'chat_sessions')} SET ${CLOSE_SET} WHERE server_id = $1 AND is_active`, [
    serverId,
    reason,
  ])

/** A tool's read, with the backend that served it so tests can see each tool had its own connection. */
export const sessionStatsForTool = (schema: string, id: string) =>
  sql(
    'chat.toolSessionStats',
    `SELECT s.turn_count AS "turnCount", (SELECT count(*)::int FROM ${t(schema, 'chat_messages')} m WHERE m.session_id = s.id) AS messages,
            pg_backend_pid() AS "backendPid"
       FROM ${t(schema, 'chat_sessions')} s WHERE s.id = $1`,
    [id],
  )

export const serverTimeForTool = () => sql('chat.toolServerTime', `SELECT now() AS now, pg_backend_pid() AS "backendPid"`)

/** Load test bookkeeping: cost rows of the sessions one run created, by status. */
export const countLlmRequestsByPrefix = (schema: string, idPrefix: string) =>
  sql(
    'chat.countLlmRequests',
    `SELECT count(*) FILTER (WHERE status = 'ok')::int AS ok, count(*) FILTER (WHERE status = 'error')::int AS error
       FROM ${t(schema, 'llm_requests')} WHERE session_id LIKE $1 || '%'`,
    [idPrefix.replace(/[\\%_]/g, '\\$&')],
  )

/** Server-side connections of one application_name (the load test polls it during a run). */
export const connectionsOfApplication = (applicationName: string) =>
  sql('chat.connectionsOfApplication', `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [applicationName])

export const backendPids = (applicationName: string) =>
  sql('chat.backendPids', `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [applicationName])
