import type { Database } from './database.js'
import { quoteIdent, sql } from './sql.js'

interface Migration {
  version: number
  name: string
  /** statements run in one transaction with the others of the same run */
  up: (schema: string) => string
}

/**
 * Append only: a released migration is never edited, a change is a new version. The runner
 * applies what is missing in one transaction under an advisory lock, so two deploys racing to
 * migrate cannot both apply a version.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'audit_log',
    up: (schema) => `
      CREATE TABLE ${schema}.audit_log (
        id            bigserial PRIMARY KEY,
        at            timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz,
        actor         text NOT NULL,
        db_user       text NOT NULL DEFAULT current_user,
        client_addr   inet DEFAULT inet_client_addr(),
        command       text NOT NULL,
        target        text NOT NULL,
        reason        text NOT NULL,
        filter        jsonb NOT NULL,
        dry_run       boolean NOT NULL,
        rows_matched  bigint,
        rows_affected bigint NOT NULL DEFAULT 0,
        status        text NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'aborted')),
        details       jsonb,
        error         text
      );
      CREATE INDEX audit_log_at_idx ON ${schema}.audit_log (at DESC);
      COMMENT ON TABLE ${schema}.audit_log IS 'Every Warden mutation and dry run: who, what filter, how many rows, when.';`,
  },
  {
    version: 2,
    name: 'scheduled_runs',
    up: (schema) => `
      CREATE TABLE ${schema}.scheduled_runs (
        key          text PRIMARY KEY,
        owner        text NOT NULL,
        claimed_at   timestamptz NOT NULL DEFAULT now(),
        lease_until  timestamptz NOT NULL,
        finished_at  timestamptz
      );
      CREATE INDEX scheduled_runs_claimed_at_idx ON ${schema}.scheduled_runs (claimed_at);
      COMMENT ON TABLE ${schema}.scheduled_runs IS 'One row per scheduled job slot: the replica that claimed it runs it, the others skip.';`,
  },
  {
    version: 3,
    name: 'reference_chat',
    // The reference chat path's own tables. Ids are text: an id the client supplies always wins,
    // whatever its shape, so the server never mints a second id for the same conversation.
    up: (schema) => `
      CREATE TABLE ${schema}.chat_sessions (
        id                text PRIMARY KEY,
        owner             text,
        agent_role        text,
        is_active         boolean NOT NULL DEFAULT true,
        started_at        timestamptz NOT NULL DEFAULT now(),
        last_activity_at  timestamptz NOT NULL DEFAULT now(),
        ended_at          timestamptz,
        duration_seconds  double precision,
        end_reason        text,
        server_id         text,
        turn_count        integer NOT NULL DEFAULT 0,
        input_tokens      bigint NOT NULL DEFAULT 0,
        output_tokens     bigint NOT NULL DEFAULT 0
      );
      CREATE INDEX chat_sessions_open_silence_idx ON ${schema}.chat_sessions (last_activity_at) WHERE is_active;
      CREATE INDEX chat_sessions_server_open_idx ON ${schema}.chat_sessions (server_id) WHERE is_active;
      CREATE TABLE ${schema}.chat_messages (
        id          bigserial PRIMARY KEY,
        session_id  text NOT NULL REFERENCES ${schema}.chat_sessions (id) ON DELETE CASCADE,
        role        text NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
        content     jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX chat_messages_session_idx ON ${schema}.chat_messages (session_id, id);
      CREATE TABLE ${schema}.llm_requests (
        id             bigserial PRIMARY KEY,
        session_id     text REFERENCES ${schema}.chat_sessions (id) ON DELETE SET NULL,
        request_id     text,
        operation      text NOT NULL DEFAULT 'chat',
        model          text NOT NULL,
        input_tokens   integer NOT NULL DEFAULT 0,
        output_tokens  integer NOT NULL DEFAULT 0,
        cost_usd       numeric(14, 6) NOT NULL DEFAULT 0,
        latency_ms     integer NOT NULL,
        status         text NOT NULL CHECK (status IN ('ok', 'error')),
        error_type     text,
        created_at     timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX llm_requests_session_idx ON ${schema}.llm_requests (session_id);
      COMMENT ON TABLE ${schema}.llm_requests IS 'One cost row per LLM call of the reference chat path, written by its own short transaction.';`,
  },
  {
    version: 4,
    name: 'audit_refused',
    // Mutations refused before they start (the table's lock is held, a hazard) are audited too.
    up: (schema) => `
      ALTER TABLE ${schema}.audit_log DROP CONSTRAINT IF EXISTS audit_log_status_check;
      ALTER TABLE ${schema}.audit_log ADD CONSTRAINT audit_log_status_check
        CHECK (status IN ('running', 'ok', 'partial', 'failed', 'aborted', 'refused'));`,
  },
  {
    version: 5,
    name: 'llm_requests_exactly_once_and_cache',
    // call_id is minted by the chat path before the call: a write retried after an unanswered
    // COMMIT finds its row instead of adding a second one. The cache columns mirror the
    // provider's usage fields (input_tokens excludes cached tokens), so a row reconciles with the invoice.
    up: (schema) => `
      ALTER TABLE ${schema}.llm_requests
        ADD COLUMN call_id uuid,
        ADD COLUMN cache_read_input_tokens integer NOT NULL DEFAULT 0,
        ADD COLUMN cache_creation_input_tokens integer NOT NULL DEFAULT 0;
      CREATE UNIQUE INDEX llm_requests_call_id_key ON ${schema}.llm_requests (call_id);
      CREATE INDEX llm_requests_request_id_idx ON ${schema}.llm_requests (request_id);
      COMMENT ON TABLE ${schema}.llm_requests IS 'One cost row per LLM call of the reference chat path (call_id unique), written with the turn or on its own.';
      COMMENT ON COLUMN ${schema}.llm_requests.input_tokens IS 'input tokens as the provider reports them: cached tokens are in cache_read_input_tokens and cache_creation_input_tokens';`,
  },
]

export interface MigrationResult {
  schema: string
  applied: Array<{ version: number; name: string }>
  currentVersion: number
}

const MIGRATE_LOCK_KEY = 'warden:migrate'

export async function migrate(db: Database, schemaName: string): Promise<MigrationResult> {
  const schema = quoteIdent(schemaName)
  return db.transaction(async (client) => {
    await db.query(sql('migrate.lock', 'SELECT pg_advisory_xact_lock(hashtext($1))', [MIGRATE_LOCK_KEY]), client)
    await db.query(sql('migrate.schema', `CREATE SCHEMA IF NOT EXISTS ${schema}`), client)
    await db.query(
      sql(
        'migrate.table',
        `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
           version int PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      ),
      client,
    )
    const done = new Set(
      (await db.rows<{ version: number }>(sql('migrate.applied', `SELECT version FROM ${schema}.schema_migrations`), client)).map(
        (row) => row.version,
      ),
    )
    const applied: MigrationResult['applied'] = []
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version)) continue
      await db.query(sql(`migrate.v${migration.version}`, migration.up(schema)), client)
      await db.query(
        sql('migrate.record', `INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [
          migration.version,
          migration.name,
        ]),
        client,
      )
      applied.push({ version: migration.version, name: migration.name })
    }
    return { schema: schemaName, applied, currentVersion: Math.max(0, ...MIGRATIONS.map((m) => m.version)) }
  })
}
