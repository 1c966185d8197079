import type pg from 'pg'
import type { Tool, ToolResultBlockParam, ToolUseBlock } from '@anthropic-ai/sdk/resources/messages'
import { serverTimeForTool, sessionStatsForTool } from '../db/queries/chat.js'
import type { Sql } from '../db/sql.js'
import { poolScope } from '../pool/instrumented-pool.js'
import { run, withClient } from './db.js'

/**
 * The reference path's tools: tiny on purpose. What matters is how they reach the database:
 * each call checks out its own connection for its one statement (session-per-operation), so
 * tools the model asks for at once run in parallel instead of colliding on a shared client
 * ("concurrent operations are not permitted", PROBLEMS.md §3).
 */
export const CHAT_TOOLS: Tool[] = [
  {
    name: 'session_stats',
    description: 'Turn count and number of stored messages of the current chat session.',
    input_schema: { type: 'object', properties: {} },
  },
  {
    name: 'server_time',
    description: "The database server's current time.",
    input_schema: { type: 'object', properties: {} },
  },
]

const STATEMENTS: Record<string, (schema: string, sessionId: string) => Sql> = {
  session_stats: (schema, sessionId) => sessionStatsForTool(schema, sessionId),
  server_time: () => serverTimeForTool(),
}

/** Runs one tool_use block; a tool's own failure becomes an is_error result the model can read, not a failed turn. */
export async function runTool(pool: pg.Pool, schema: string, sessionId: string, use: ToolUseBlock): Promise<ToolResultBlockParam> {
  const statement = STATEMENTS[use.name]
  if (!statement) return { type: 'tool_result', tool_use_id: use.id, is_error: true, content: `unknown tool ${use.name}` }
  try {
    // poolScope: each tool is its own operation, so a sibling tool's LLM call is never charged with this one's client.
    const { rows } = await poolScope(() => withClient(pool, (client) => run(client, statement(schema, sessionId))))
    return { type: 'tool_result', tool_use_id: use.id, content: JSON.stringify(rows[0] ?? null) }
  } catch (error) {
    return { type: 'tool_result', tool_use_id: use.id, is_error: true, content: `tool failed: ${(error as Error).message}` }
  }
}
