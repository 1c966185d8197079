import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/core/config.js'
import { resolveSessionTable, type SessionTable } from '../../src/db/session-table.js'
import { migrate } from '../../src/db/migrate.js'
import { ROOT } from './cli.js'
import type { TestDatabase } from './db.js'

export const exampleSchema = (shape: 'conversation_sessions' | 'llm_sessions') =>
  readFileSync(join(ROOT, 'examples', shape, 'schema.sql'), 'utf8')
export const exampleConfigPath = (shape: 'conversation_sessions' | 'llm_sessions') => join(ROOT, 'examples', shape, 'warden.config.yaml')

export const GROUPS = ['support-agent', 'billing-agent', 'code-agent'] as const

/** conversation_sessions with `orphans` sessions silent for 3 h+ and `live` sessions seen a minute ago. */
export async function seedConversationSessions(t: TestDatabase, counts: { orphans: number; live: number; closed?: number }): Promise<void> {
  await t.exec(exampleSchema('conversation_sessions'))
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
     SELECT gen_random_uuid(), 'user-' || (i % 97), ($2::text[])[1 + i % 3], true,
            now() - interval '5 hours' - i * interval '1 second', now() - interval '3 hours' - i * interval '1 second'
       FROM generate_series(1, $1::int) AS i`,
    [counts.orphans, GROUPS],
  )
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
     SELECT gen_random_uuid(), 'user-' || (i % 97), ($2::text[])[1 + i % 3], true, now() - interval '4 hours', now() - interval '1 minute'
       FROM generate_series(1, $1::int) AS i`,
    [counts.live, GROUPS],
  )
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds)
     SELECT gen_random_uuid(), 'user-' || i, ($2::text[])[1 + i % 3], false, now() - interval '2 days', now() - interval '47 hours',
            now() - interval '47 hours', now() - interval '47 hours', 3600
       FROM generate_series(1, $1::int) AS i`,
    [counts.closed ?? 0, GROUPS],
  )
  await t.exec('ANALYZE conversation_sessions')
}

export async function conversationTable(t: TestDatabase, migrated = true): Promise<SessionTable> {
  if (migrated) await migrate(t.db, 'warden')
  const { config } = loadConfig({ configPath: exampleConfigPath('conversation_sessions'), env: {} })
  return resolveSessionTable(t.db, config.sessions)
}

/** Every row is either fully closed or untouched: never half-written. */
export async function rowStates(t: TestDatabase): Promise<Record<string, number>> {
  const { rows } = await t.exec(
    `SELECT CASE
              WHEN is_active AND session_end IS NULL AND ended_at IS NULL AND duration_seconds IS NULL THEN 'open'
              WHEN NOT is_active AND session_end IS NOT NULL AND ended_at IS NOT NULL AND duration_seconds IS NOT NULL THEN 'closed'
              ELSE 'inconsistent'
            END AS state, count(*)::int AS n
       FROM conversation_sessions GROUP BY 1`,
  )
  return Object.fromEntries(rows.map((r) => [r.state, r.n]))
}

export async function orphanCount(t: TestDatabase): Promise<number> {
  const { rows } = await t.exec(
    `SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active AND COALESCE(last_activity_at, session_start) < now() - interval '2 hours'`,
  )
  return rows[0].n
}

/** conversation_sessions as the invariants see it. */
export const CONVERSATION_SHAPE = {
  table: 'public.conversation_sessions',
  active: 'is_active',
  endedAt: ['session_end', 'ended_at'],
  durationSeconds: 'duration_seconds',
  startedAt: 'session_start',
  lastSeenAt: 'last_activity_at',
} as const
