import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig, type SessionsConfig } from '../src/core/config.js'
import { sessionsSchema } from '../src/core/config-schema.js'
import { ExitCode, WardenError } from '../src/core/errors.js'
import { resolveSessionTable } from '../src/db/session-table.js'
import { ROOT } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'

const example = (shape: 'conversation_sessions' | 'llm_sessions') => ({
  schema: readFileSync(join(ROOT, 'examples', shape, 'schema.sql'), 'utf8'),
  configPath: join(ROOT, 'examples', shape, 'warden.config.yaml'),
})

/** The conversation_sessions mapping with some keys changed, validated like a config file would be. */
function conversationMapping(changes: { table?: string; columns?: Record<string, unknown> } = {}): SessionsConfig {
  return sessionsSchema.parse({
    table: changes.table ?? 'public.conversation_sessions',
    columns: {
      id: 'session_id',
      active: 'is_active',
      startedAt: 'session_start',
      lastSeenAt: 'last_activity_at',
      endedAt: ['session_end', 'ended_at'],
      durationSeconds: 'duration_seconds',
      group: 'agent_role',
      ...changes.columns,
    },
  })
}

/** Resolves expecting failure; returns the error so each test can say what the message must name. */
async function resolveError(t: TestDatabase, config: SessionsConfig): Promise<WardenError> {
  const outcome = await resolveSessionTable(t.db, config).then(
    (table) => new Error(`expected the mapping to be refused, it resolved to ${table.table}`),
    (error: unknown) => error,
  )
  expect(outcome).toBeInstanceOf(WardenError)
  const error = outcome as WardenError
  expect(error.exitCode).toBe(ExitCode.config)
  return error
}

describe('resolveSessionTable against the catalog', () => {
  let t: TestDatabase

  beforeAll(async () => {
    t = await createTestDatabase('mapping')
    await t.exec(example('conversation_sessions').schema)
    await t.exec(example('llm_sessions').schema)
    await t.exec(`
      ALTER TABLE conversation_sessions ADD COLUMN status text, ADD COLUMN started_day date, ADD COLUMN note text;
      CREATE VIEW recent_sessions AS SELECT * FROM conversation_sessions;
      CREATE SCHEMA analytics;
      CREATE TABLE analytics.chat (
        chat_id bigint NOT NULL,
        tenant text NOT NULL,
        opened_at timestamp NOT NULL,
        closed_at timestamp,
        secs numeric
      );
      CREATE TABLE analytics.chat_unique (LIKE analytics.chat);
      CREATE UNIQUE INDEX ON analytics.chat_unique (chat_id);
      CREATE TABLE analytics.chat_composite (LIKE analytics.chat);
      CREATE UNIQUE INDEX ON analytics.chat_composite (chat_id, tenant);
      CREATE TABLE analytics.chat_partial (LIKE analytics.chat);
      CREATE UNIQUE INDEX ON analytics.chat_partial (chat_id) WHERE closed_at IS NULL;
      CREATE TABLE analytics.chat_other_unique (LIKE analytics.chat);
      CREATE UNIQUE INDEX ON analytics.chat_other_unique (tenant);
      CREATE TABLE analytics."MixedCase" ("SessionId" uuid PRIMARY KEY, "StartedAt" timestamptz NOT NULL, "EndedAt" timestamptz);
    `)
  })

  afterAll(async () => {
    await t?.drop()
  })

  describe('the example shapes resolve with their example configs', () => {
    it('conversation_sessions: boolean is_active, two endedAt columns, duration and group, unique uuid id', async () => {
      const { config } = loadConfig({ configPath: example('conversation_sessions').configPath, env: {} })
      const table = await resolveSessionTable(t.db, config.sessions)
      expect(table.name).toEqual({ schema: 'public', name: 'conversation_sessions' })
      expect(table.table).toBe('"public"."conversation_sessions"')
      expect(table).toMatchObject({
        id: '"session_id"',
        active: '"is_active"',
        startedAt: '"session_start"',
        lastSeenAt: '"last_activity_at"',
        endedAt: ['"session_end"', '"ended_at"'],
        durationSeconds: '"duration_seconds"',
        group: '"agent_role"',
        idUnique: true,
      })
      expect(table.config.orphanAfter).toBe(7200)
    })

    it('llm_sessions: no active column (open while expired_at IS NULL), bigserial id, closeTimestamp lastSeen', async () => {
      const { config } = loadConfig({ configPath: example('llm_sessions').configPath, env: {} })
      const table = await resolveSessionTable(t.db, config.sessions)
      expect(table.table).toBe('"public"."llm_sessions"')
      expect(table.active).toBeUndefined()
      expect(table.durationSeconds).toBeUndefined()
      expect(table).toMatchObject({
        id: '"id"',
        startedAt: '"created_at"',
        lastSeenAt: '"last_query_at"',
        endedAt: ['"expired_at"'],
        group: '"role"',
        idUnique: true,
      })
      expect(table.config.orphanAfter).toBe(1800)
      expect(table.config.closeTimestamp).toBe('lastSeen')
    })

    it('a table outside public, with timestamp without time zone and a numeric duration, resolves too', async () => {
      const table = await resolveSessionTable(
        t.db,
        sessionsSchema.parse({
          table: 'analytics.chat',
          columns: { id: 'chat_id', startedAt: 'opened_at', endedAt: 'closed_at', durationSeconds: 'secs', group: 'tenant' },
        }),
      )
      expect(table.table).toBe('"analytics"."chat"')
      expect(table.durationSeconds).toBe('"secs"')
    })

    it('mixed-case names are matched exactly and stay quoted', async () => {
      const table = await resolveSessionTable(
        t.db,
        sessionsSchema.parse({ table: 'analytics.MixedCase', columns: { id: 'SessionId', startedAt: 'StartedAt', endedAt: 'EndedAt' } }),
      )
      expect(table.table).toBe('"analytics"."MixedCase"')
      expect(table.id).toBe('"SessionId"')
      expect(table.idUnique).toBe(true)
    })
  })

  describe('a mapping that does not match the catalog is refused at start-up (exit 78)', () => {
    it('an unknown table: the message names it and lists the tables the schema has', async () => {
      const error = await resolveError(t, conversationMapping({ table: 'public.chat_sessions' }))
      expect(error.message).toContain('sessions.table = "public.chat_sessions"')
      expect(error.message).toContain('no table public.chat_sessions')
      expect(error.message).toMatch(/conversation_sessions/)
      expect(error.message).toMatch(/llm_sessions/)
    })

    it("an unknown table in another schema lists that schema's tables", async () => {
      const error = await resolveError(t, conversationMapping({ table: 'analytics.chats' }))
      expect(error.message).toContain('no table analytics.chats')
      expect(error.message).toMatch(/schema analytics has: .*\bchat\b.*\bchat_composite\b/)
      expect(error.message).not.toContain('conversation_sessions')
    })

    it('a table in a schema that does not exist says the schema does not exist (not that it is empty)', async () => {
      const error = await resolveError(t, conversationMapping({ table: 'pubic.conversation_sessions' }))
      expect(error.message).toContain('sessions.table = "pubic.conversation_sessions"')
      expect(error.message).toMatch(/schema pubic does not exist|no schema pubic/)
    })

    it("an unknown column: the message names key and column and lists the table's columns with their types", async () => {
      const error = await resolveError(t, conversationMapping({ columns: { lastSeenAt: 'last_seen' } }))
      expect(error.message).toContain('sessions.columns.lastSeenAt = "last_seen"')
      expect(error.message).toContain('has no column last_seen')
      expect(error.message).toContain('session_id (uuid)')
      expect(error.message).toContain('is_active (boolean)')
      expect(error.message).toContain('last_activity_at (timestamp with time zone)')
      expect(error.message).toContain('duration_seconds (integer)')
    })

    it('an unknown column in the endedAt list names its position', async () => {
      const error = await resolveError(t, conversationMapping({ columns: { endedAt: ['session_end', 'finished_at'] } }))
      expect(error.message).toContain('sessions.columns.endedAt[1] = "finished_at"')
    })

    it('a text column mapped as active is refused: it names the column, its type and that a boolean is expected', async () => {
      const error = await resolveError(t, conversationMapping({ columns: { active: 'status' } }))
      expect(error.message).toContain('sessions.columns.active = "status"')
      expect(error.message).toMatch(/status is text/)
      expect(error.message).toMatch(/expected boolean/)
    })

    it('a non-timestamp startedAt is refused (text and date alike)', async () => {
      const text = await resolveError(t, conversationMapping({ columns: { startedAt: 'user_id' } }))
      expect(text.message).toContain('sessions.columns.startedAt = "user_id"')
      expect(text.message).toMatch(/user_id is text, expected timestamp/)

      const date = await resolveError(t, conversationMapping({ columns: { startedAt: 'started_day' } }))
      expect(date.message).toMatch(/started_day is date, expected timestamp/)
    })

    it('a non-timestamp endedAt or lastSeenAt is refused', async () => {
      const ended = await resolveError(t, conversationMapping({ columns: { endedAt: ['session_end', 'note'] } }))
      expect(ended.message).toContain('sessions.columns.endedAt[1] = "note"')
      const seen = await resolveError(t, conversationMapping({ columns: { lastSeenAt: 'is_active' } }))
      expect(seen.message).toMatch(/sessions\.columns\.lastSeenAt = "is_active": column is_active is boolean, expected timestamp/)
    })

    it('a non-numeric durationSeconds is refused', async () => {
      const error = await resolveError(t, conversationMapping({ columns: { durationSeconds: 'note' } }))
      expect(error.message).toContain('sessions.columns.durationSeconds = "note"')
      expect(error.message).toMatch(/expected a number/)
    })

    it('a view instead of a table is refused, and the message says it is a view', async () => {
      const error = await resolveError(t, conversationMapping({ table: 'public.recent_sessions' }))
      expect(error.message).toContain('sessions.table = "public.recent_sessions"')
      expect(error.message).toMatch(/not a table/)
      // "relkind v" is catalog jargon; the user named a view and should be told so in words.
      expect(error.message).toMatch(/\bis a view\b/)
    })
  })

  describe('idUnique: keyset batching is exact only over a unique id', () => {
    const chatMapping = (table: string) =>
      sessionsSchema.parse({ table: `analytics.${table}`, columns: { id: 'chat_id', startedAt: 'opened_at', endedAt: 'closed_at' } })

    it.each([
      ['chat', false, 'no index at all'],
      ['chat_unique', true, 'a unique index on the id column'],
      ['chat_composite', false, 'a unique index on (id, another column)'],
      ['chat_partial', false, 'a partial unique index'],
      ['chat_other_unique', false, 'a unique index on another column'],
    ])('analytics.%s → idUnique %s (%s)', async (table, unique) => {
      expect((await resolveSessionTable(t.db, chatMapping(table))).idUnique).toBe(unique)
    })
  })
})
