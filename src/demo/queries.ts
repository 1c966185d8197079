import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { sql, type Sql } from '../db/sql.js'
import type { DemoSession } from './seed.js'

/**
 * The demo's table and mapping are the shipped example's, read at run time: the example users
 * copy and the table the demo sweeps cannot drift apart. Two levels up from dist/demo (or
 * src/demo under tsx) is the package root, which ships examples/ (package.json "files").
 */
const EXAMPLE_DIR = new URL('../../examples/conversation_sessions/', import.meta.url)
export const DEMO_SCHEMA_FILE = fileURLToPath(new URL('schema.sql', EXAMPLE_DIR))
export const DEMO_CONFIG_FILE = fileURLToPath(new URL('warden.config.yaml', EXAMPLE_DIR))

/** Several statements in one text: sent without parameters, so PostgreSQL takes them as one simple query. */
export function createConversationSessions(): Sql {
  return sql('demo.schema', readFileSync(DEMO_SCHEMA_FILE, 'utf8'))
}

/**
 * One statement per chunk of rows: columns travel as arrays and unnest() turns them into rows,
 * so thousands of sessions cost one round trip. Instants are computed from ages by the server's
 * clock, the same clock every Warden query measures silence with.
 */
export function insertDemoSessions(rows: DemoSession[]): Sql {
  return sql(
    'demo.insertSessions',
    `INSERT INTO public.conversation_sessions
            (session_id, user_id, agent_role, is_active, session_start, last_activity_at, session_end, ended_at, duration_seconds)
     SELECT id, user_id, agent_role, is_active,
            now() - make_interval(secs => start_ago),
            now() - make_interval(secs => last_ago),
            now() - make_interval(secs => end_ago),
            now() - make_interval(secs => end_ago),
            duration
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::float8[], $6::float8[], $7::float8[], $8::int[])
            AS s(id, user_id, agent_role, is_active, start_ago, last_ago, end_ago, duration)`,
    [
      rows.map((r) => r.id),
      rows.map((r) => r.userId),
      rows.map((r) => r.group),
      rows.map((r) => r.active),
      rows.map((r) => r.startAgoSeconds),
      rows.map((r) => r.lastActivityAgoSeconds),
      rows.map((r) => r.endAgoSeconds),
      rows.map((r) => r.durationSeconds),
    ],
  )
}

/** Fresh statistics, so the planner sees thousands of rows rather than an empty table. */
export const analyzeConversationSessions = (): Sql => sql('demo.analyze', 'ANALYZE public.conversation_sessions')

/** A demo chat user's session row, as the websocket backend of the post-mortem writes it. */
export const openDemoSession = (id: string, user: string, group: string): Sql =>
  sql(
    'demo.openSession',
    `INSERT INTO public.conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
     VALUES ($1, $2, $3, true, now(), now())`,
    [id, user, group],
  )

export const touchDemoSession = (id: string): Sql =>
  sql('demo.touchSession', 'UPDATE public.conversation_sessions SET last_activity_at = now() WHERE session_id = $1', [id])

/** What disconnect() should have done (and, for the leaking users, does not). */
export const closeDemoSession = (id: string): Sql =>
  sql(
    'demo.closeSession',
    `UPDATE public.conversation_sessions
        SET is_active = false, session_end = now(), ended_at = now(),
            duration_seconds = round(extract(epoch FROM now() - session_start))::int
      WHERE session_id = $1 AND is_active`,
    [id],
  )

/** The hold app's read inside the transaction it then keeps open across its LLM call. */
export const countOpenDemoSessions = (): Sql =>
  sql('demo.countOpen', 'SELECT count(*) AS open FROM public.conversation_sessions WHERE is_active')

/** The demo's second target: a jobs database whose agent_runs are open until finished_at is set. */
export const JOBS_DATABASE = 'warden_demo_jobs'

export const dropJobsDatabase = (): Sql => sql('demo.dropJobs', `DROP DATABASE IF EXISTS ${JOBS_DATABASE} WITH (FORCE)`)
export const createJobsDatabase = (): Sql => sql('demo.createJobs', `CREATE DATABASE ${JOBS_DATABASE}`)

export const createAgentRuns = (): Sql =>
  sql(
    'demo.createAgentRuns',
    `CREATE TABLE IF NOT EXISTS public.agent_runs (
       run_id        bigserial PRIMARY KEY,
       agent         text NOT NULL,
       started_at    timestamptz NOT NULL DEFAULT now(),
       heartbeat_at  timestamptz,
       finished_at   timestamptz
     );
     CREATE INDEX IF NOT EXISTS agent_runs_open_silence_idx ON public.agent_runs ((COALESCE(heartbeat_at, started_at))) WHERE finished_at IS NULL`,
  )

/** Finished runs, runs that are alive (a heartbeat a few seconds ago), and runs whose worker died an hour ago. */
export const seedAgentRuns = (counts: { finished: number; alive: number; dead: number }): Sql =>
  sql(
    'demo.seedAgentRuns',
    `INSERT INTO public.agent_runs (agent, started_at, heartbeat_at, finished_at)
     SELECT (ARRAY['planner', 'coder', 'reviewer'])[1 + i % 3], now() - interval '3 hours', now() - interval '2 hours 50 minutes', now() - interval '2 hours 45 minutes'
       FROM generate_series(1, $1::int) i
     UNION ALL
     SELECT (ARRAY['planner', 'coder', 'reviewer'])[1 + i % 3], now() - interval '10 minutes', now() - make_interval(secs => i % 30), NULL
       FROM generate_series(1, $2::int) i
     UNION ALL
     SELECT (ARRAY['planner', 'coder', 'reviewer'])[1 + i % 3], now() - interval '2 hours', now() - interval '1 hour', NULL
       FROM generate_series(1, $3::int) i`,
    [counts.finished, counts.alive, counts.dead],
  )
