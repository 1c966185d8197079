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

/** The conversation_sessions mapping of examples/conversation_sessions, as a YAML flow map for config files written by tests. */
export const CONVERSATION_COLUMNS =
  '{ id: session_id, active: is_active, startedAt: session_start, lastSeenAt: last_activity_at, endedAt: [session_end, ended_at], durationSeconds: duration_seconds, group: agent_role }'

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

/** The calendar days seedDailyStats wrote to, as PostgreSQL names them (YYYY-MM-DD). */
export interface StatsDays {
  d1: string
  d2: string
  d5: string
}

/**
 * conversation_sessions (created here) with six sessions on known days, so a day's figures are
 * known constants (orphanAfter 2 h, as in the example config):
 * - 1 day back: two closed support-agent sessions of 600 s and 1200 s (avg 900), one open billing-agent orphan;
 * - 2 days back: two open code-agent sessions, one seen a minute ago, one orphaned;
 * - 5 days back: one closed support-agent session of 60 s.
 * Each starts at noon of its day, whatever the hour now.
 */
export async function seedDailyStats(t: TestDatabase): Promise<StatsDays> {
  await t.exec(exampleSchema('conversation_sessions'))
  const noon = (days: number, plus = '0 seconds') =>
    `date_trunc('day', now()) - interval '${days} days' + interval '12 hours' + interval '${plus}'`
  const closed = (user: string, group: string, days: number, seconds: number) =>
    `(gen_random_uuid(), '${user}', '${group}', false, ${noon(days)}, ${noon(days, `${seconds} seconds`)}, ${noon(days, `${seconds} seconds`)}, ${noon(days, `${seconds} seconds`)}, ${seconds})`
  const open = (user: string, group: string, days: number, lastSeen: string) =>
    `(gen_random_uuid(), '${user}', '${group}', true, ${noon(days)}, ${lastSeen}, NULL, NULL, NULL)`
  await t.exec(
    `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds)
     VALUES ${[
       closed('a', 'support-agent', 1, 600),
       closed('b', 'support-agent', 1, 1200),
       open('c', 'billing-agent', 1, noon(1, '1 hour')),
       open('d', 'code-agent', 2, `now() - interval '1 minute'`),
       open('e', 'code-agent', 2, noon(2, '1 hour')),
       closed('f', 'support-agent', 5, 60),
     ].join(',\n')}`,
  )
  const { rows } = await t.exec(
    `SELECT to_char(now() - interval '1 day', 'YYYY-MM-DD') AS d1, to_char(now() - interval '2 days', 'YYYY-MM-DD') AS d2,
            to_char(now() - interval '5 days', 'YYYY-MM-DD') AS d5`,
  )
  return rows[0] as StatsDays
}

/** What a 7-day sessions stats of seedDailyStats is, per day (byGroup false) and per day and group (byGroup true, 3 days). */
export const dailyStatsExpected = (day: StatsDays) => ({
  all: [
    { day: day.d1, group: 'all', total: 3, avgDurationSeconds: 900, stillActive: 1, orphaned: 1 },
    { day: day.d2, group: 'all', total: 2, avgDurationSeconds: null, stillActive: 2, orphaned: 1 },
    { day: day.d5, group: 'all', total: 1, avgDurationSeconds: 60, stillActive: 0, orphaned: 0 },
  ],
  byGroup3Days: [
    { day: day.d1, group: 'billing-agent', total: 1, avgDurationSeconds: null, stillActive: 1, orphaned: 1 },
    { day: day.d1, group: 'support-agent', total: 2, avgDurationSeconds: 900, stillActive: 0, orphaned: 0 },
    { day: day.d2, group: 'code-agent', total: 2, avgDurationSeconds: null, stillActive: 2, orphaned: 1 },
  ],
})
