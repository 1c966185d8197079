import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { resolveSessionTable } from '../src/db/session-table.js'
import { migrate } from '../src/db/migrate.js'
import { bulkClose, sweepOrphans } from '../src/sessions/sweep.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import {
  conversationTable,
  exampleConfigPath,
  exampleSchema,
  orphanCount,
  rowStates,
  seedConversationSessions,
} from './helpers/fixtures.js'

const fixed = (batchSize: number) => ({ mode: 'fixed' as const, batchSize })
const run = { batching: fixed(100), wardenSchema: 'warden', command: 'test sweep' }

describe('sessions sweep (library, real PostgreSQL)', () => {
  let t: TestDatabase
  beforeEach(async () => {
    t = await createTestDatabase('sweep')
  })
  afterEach(async () => {
    await t.drop()
  })

  it('dry run reports orphans by group, the oldest silence and a sample, changes nothing, and is audited as a dry run', async () => {
    await seedConversationSessions(t, { orphans: 30, live: 20, closed: 10 })
    const table = await conversationTable(t)
    const before = await rowStates(t)
    const { json, report } = await sweepOrphans(t.db, table, { ...run, dryRun: true, sampleSize: 3 })
    expect(json).toMatchObject({
      dryRun: true,
      orphans: 30,
      closed: 0,
      batches: 0,
      byGroup: { 'support-agent': 10, 'billing-agent': 10, 'code-agent': 10 },
    })
    // the most silent orphan was last seen 3 h + 30 s ago
    expect(json.oldestAgeSeconds).toBeGreaterThanOrEqual(3 * 3600 + 30)
    expect(json.oldestAgeSeconds).toBeLessThan(3 * 3600 + 120)
    expect(report.sample).toHaveLength(3)
    expect(report.sample[0]!.silentSeconds).toBeGreaterThanOrEqual(report.sample[2]!.silentSeconds)
    expect(await rowStates(t)).toEqual(before)
    const { rows } = await t.exec('SELECT dry_run, rows_matched::int, rows_affected::int, status FROM warden.audit_log')
    expect(rows).toEqual([{ dry_run: true, rows_matched: 30, rows_affected: 0, status: 'ok' }])
  })

  it('apply closes every orphan fully (active, both end columns, duration) in batches and leaves live and closed sessions alone', async () => {
    await seedConversationSessions(t, { orphans: 250, live: 40, closed: 15 })
    const table = await conversationTable(t)
    const { json } = await sweepOrphans(t.db, table, { ...run, dryRun: false })
    expect(json).toMatchObject({ dryRun: false, orphans: 250, closed: 250, remaining: 0, batches: 3 })
    expect(Object.values(json.byGroup).reduce((a, b) => a + b, 0)).toBe(250)
    expect(await rowStates(t)).toEqual({ open: 40, closed: 265 })
    const { rows } = await t.exec(
      `SELECT min(duration_seconds - EXTRACT(EPOCH FROM (session_end - session_start)))::float8 AS drift_min,
              max(abs(duration_seconds - EXTRACT(EPOCH FROM (session_end - session_start))))::float8 AS drift_max,
              bool_and(session_end = ended_at) AS same_end
         FROM conversation_sessions WHERE duration_seconds IS NOT NULL AND duration_seconds <> 3600`,
    )
    expect(rows[0].same_end).toBe(true)
    expect(rows[0].drift_max).toBeLessThanOrEqual(1) // integer column: rounded
    const audit = await t.exec('SELECT dry_run, rows_matched::int, rows_affected::int, status, details FROM warden.audit_log')
    expect(audit.rows).toEqual([expect.objectContaining({ dry_run: false, rows_matched: 250, rows_affected: 250, status: 'ok' })])
    expect(audit.rows[0].details).toMatchObject({ closed: 250, batches: 3 })
  })

  it('walks the orphan index when there is one, and the id without it: both close every orphan exactly once', async () => {
    await seedConversationSessions(t, { orphans: 95, live: 12 })
    // Orphans that share one timestamp: the (lastSeen, id) cursor must not skip or repeat any of them.
    await t.exec(
      `UPDATE conversation_sessions SET last_activity_at = date_trunc('hour', now()) - interval '5 hours' WHERE is_active AND last_activity_at < now() - interval '2 hours' AND agent_role = 'code-agent'`,
    )
    const indexed = await conversationTable(t)
    expect(indexed.silenceIndexed).toBe(true)
    const first = await sweepOrphans(t.db, indexed, { ...run, batching: fixed(7), maxRows: 50, dryRun: false })
    expect(first.json).toMatchObject({ closed: 50, remaining: 45, batches: 8 })
    await t.exec('DROP INDEX conversation_sessions_open_silence_idx')
    const unindexed = await conversationTable(t, false)
    expect(unindexed.silenceIndexed).toBe(false)
    const second = await sweepOrphans(t.db, unindexed, { ...run, batching: fixed(7), dryRun: false })
    expect(second.json).toMatchObject({ orphans: 45, closed: 45, remaining: 0 })
    expect(await rowStates(t)).toEqual({ open: 12, closed: 95 })
    const { rows } = await t.exec('SELECT sum(rows_affected)::int AS n FROM warden.audit_log WHERE NOT dry_run')
    expect(rows[0].n).toBe(95)
  })

  it('--max-rows stops early, says how many are left, and the next run finishes', async () => {
    await seedConversationSessions(t, { orphans: 120, live: 5 })
    const table = await conversationTable(t)
    const first = await sweepOrphans(t.db, table, { ...run, batching: fixed(50), maxRows: 70, dryRun: false })
    expect(first.json).toMatchObject({ closed: 70, remaining: 50, stoppedEarly: 'max-rows' })
    const second = await sweepOrphans(t.db, table, { ...run, dryRun: false })
    expect(second.json).toMatchObject({ orphans: 50, closed: 50, remaining: 0 })
    const { rows } = await t.exec('SELECT status FROM warden.audit_log WHERE NOT dry_run ORDER BY id')
    expect(rows.map((r) => r.status)).toEqual(['partial', 'ok'])
  })

  it("skips a session a live writer holds instead of waiting, never loses the writer's update, and closes it on the next run", async () => {
    await seedConversationSessions(t, { orphans: 50, live: 5 })
    const table = await conversationTable(t)
    const { rows: picked } = await t.exec(
      `SELECT session_id::text AS id FROM conversation_sessions WHERE is_active AND last_activity_at < now() - interval '2 hours' ORDER BY session_id LIMIT 2`,
    )
    const [touched, held] = picked.map((r) => r.id as string)
    const writer = new pg.Client({ connectionString: t.url })
    const holder = new pg.Client({ connectionString: t.url })
    await Promise.all([writer.connect(), holder.connect()])
    try {
      // A live writer: the session shows a sign of life inside an open transaction.
      await writer.query('BEGIN')
      await writer.query('UPDATE conversation_sessions SET last_activity_at = now() WHERE session_id = $1', [touched])
      // Another transaction holds a row lock without changing anything (SELECT … FOR UPDATE).
      await holder.query('BEGIN')
      await holder.query('SELECT 1 FROM conversation_sessions WHERE session_id = $1 FOR UPDATE', [held])

      const sweep = sweepOrphans(t.db, table, { ...run, batching: fixed(7), dryRun: false })
      const blocked = new Promise((_, reject) => setTimeout(() => reject(new Error('the sweep waited on a row lock')), 10_000))
      const { json } = (await Promise.race([sweep, blocked])) as Awaited<typeof sweep>
      expect(json.orphans).toBe(50)
      expect(json.closed).toBe(48)
      expect(json.remaining).toBe(2)
      expect(json.warnings.join(' ')).toMatch(/held by a live writer/)

      await writer.query('COMMIT')
      await holder.query('COMMIT')
    } finally {
      await Promise.all([writer.end(), holder.end()])
    }
    const { rows } = await t.exec(
      "SELECT session_id::text AS id, is_active, last_activity_at > now() - interval '1 minute' AS fresh FROM conversation_sessions WHERE session_id = ANY($1::uuid[])",
      [[touched, held]],
    )
    const byId = Object.fromEntries(rows.map((r) => [r.id, r]))
    expect(byId[touched!]).toMatchObject({ is_active: true, fresh: true })
    expect(byId[held!]).toMatchObject({ is_active: true, fresh: false })

    const next = await sweepOrphans(t.db, table, { ...run, dryRun: false })
    expect(next.json).toMatchObject({ orphans: 1, closed: 1, remaining: 0 })
    expect(await rowStates(t)).toEqual({ open: 6, closed: 49 })
  })

  it('works on the llm_sessions shape: no boolean, open while expired_at IS NULL, expired at the last query', async () => {
    await t.exec(exampleSchema('llm_sessions'))
    await t.exec(
      `INSERT INTO llm_sessions (role, created_at, last_query_at, expired_at)
       SELECT (ARRAY['planner','coder'])[1 + i % 2], now() - interval '3 hours', now() - interval '40 minutes' - i * interval '1 minute', NULL::timestamptz FROM generate_series(1, 12) i
       UNION ALL SELECT 'planner', now() - interval '10 minutes', now() - interval '1 minute', NULL::timestamptz FROM generate_series(1, 4)
       UNION ALL SELECT 'coder', now() - interval '1 day', NULL::timestamptz, now() - interval '20 hours' FROM generate_series(1, 3)`,
    )
    await migrate(t.db, 'warden')
    const { config } = loadConfig({ configPath: exampleConfigPath('llm_sessions'), env: {} })
    const table = await resolveSessionTable(t.db, config.sessions)
    expect(table.active).toBeUndefined()
    const { json } = await sweepOrphans(t.db, table, { ...run, dryRun: false })
    expect(json).toMatchObject({ orphans: 12, closed: 12, byGroup: { planner: 6, coder: 6 }, orphanAfterSeconds: 1800 })
    const { rows } = await t.exec(
      `SELECT count(*) FILTER (WHERE expired_at IS NULL)::int AS open,
              count(*) FILTER (WHERE expired_at = last_query_at)::int AS expired_at_last_query
         FROM llm_sessions`,
    )
    expect(rows[0]).toEqual({ open: 4, expired_at_last_query: 12 })
  })

  it('bulk close by group and by id closes only what the filter names, with reason bulk_close in the audit', async () => {
    await seedConversationSessions(t, { orphans: 0, live: 30 })
    const table = await conversationTable(t)
    const byGroup = await bulkClose(t.db, table, { groups: ['code-agent'] }, { ...run, dryRun: false })
    expect(byGroup.json).toMatchObject({ matched: 10, closed: 10, byGroup: { 'code-agent': 10 }, filter: { groups: ['code-agent'] } })
    const { rows: ids } = await t.exec(
      `SELECT session_id::text AS id FROM conversation_sessions WHERE is_active ORDER BY session_id LIMIT 3`,
    )
    const byId = await bulkClose(t.db, table, { ids: ids.map((r) => r.id) }, { ...run, dryRun: false })
    expect(byId.json).toMatchObject({ matched: 3, closed: 3 })
    const olderThan = await bulkClose(t.db, table, { olderThanSeconds: 5 * 3600 }, { ...run, dryRun: false })
    expect(olderThan.json).toMatchObject({ matched: 0, closed: 0 })
    const all = await bulkClose(t.db, table, { all: true }, { ...run, dryRun: false })
    expect(all.json).toMatchObject({ matched: 17, closed: 17 })
    expect(await rowStates(t)).toEqual({ closed: 30 })
    const { rows } = await t.exec(`SELECT reason, count(*)::int AS n, sum(rows_affected)::int AS rows FROM warden.audit_log GROUP BY 1`)
    expect(rows).toEqual([{ reason: 'bulk_close', n: 4, rows: 30 }])
  })

  it('refuses to apply without the audit table, and changes nothing', async () => {
    await seedConversationSessions(t, { orphans: 5, live: 1 })
    const table = await conversationTable(t, false)
    await expect(sweepOrphans(t.db, table, { ...run, dryRun: false })).rejects.toThrow(/warden db migrate/)
    expect(await orphanCount(t)).toBe(5)
  })
})
