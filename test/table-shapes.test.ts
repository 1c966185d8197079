import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db/database.js'
import { migrate } from '../src/db/migrate.js'
import { parseJson, runCli, writeConfig, type CliResult } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { expectInvariants, snapshotTable, type TableShape } from './helpers/invariants.js'

/**
 * The session table is the user's: sweep, close and list must be exact on every shape users
 * have, not only on ours. Each shape below is seeded with known rows (orphans silent for 3 h,
 * live sessions seen a minute ago, sessions closed long ago), then driven through the CLI as a
 * subprocess, with the invariants checked by SQL after every mutation, on a server in UTC and on
 * one in Asia/Kolkata (+05:30), and with the CLI process itself in Pacific/Chatham (+13:45), so a
 * timestamp read in the wrong zone cannot go unnoticed.
 */

type Kind = 'orphan' | 'live' | 'closed'
interface Seed {
  id: string | null
  kind: Kind
  group: 'g1' | 'g2'
  tenant?: number
}

/** How far back each kind's timestamps lie (seconds): started, last seen, ended. */
const AGES: Record<Kind, { started: number; seen: number; ended: number | null }> = {
  orphan: { started: 5 * 3600, seen: 3 * 3600, ended: null },
  live: { started: 3600, seen: 60, ended: null },
  closed: { started: 30 * 86400, seen: 29 * 86400, ended: 29 * 86400 },
}
const ORPHAN_AFTER = 7200

/** Five orphans, four live and three closed sessions, in two groups; shapes add their own twists. */
const BASE: Seed[] = [
  ...[1, 2, 3, 4, 5].map((i): Seed => ({ id: `o${i}`, kind: 'orphan', group: i % 2 ? 'g1' : 'g2' })),
  ...[1, 2, 3, 4].map((i): Seed => ({ id: `l${i}`, kind: 'live', group: i % 2 ? 'g1' : 'g2' })),
  ...[1, 2, 3].map((i): Seed => ({ id: `c${i}`, kind: 'closed', group: 'g1' })),
]

interface Shape {
  name: string
  ddl: string
  /** the invariants' view of the table */
  shape: TableShape
  /** the mapping's `sessions:` YAML */
  mapping: string
  rows: Seed[]
  /** SQL of an instant `seconds` ago, as the application would write it into this shape's columns */
  at: (seconds: number) => string
  insert: (row: Seed) => string
}

const aware = (seconds: number) => `now() - make_interval(secs => ${seconds})`
/** naive, written in the server's own zone */
const naiveLocal = (seconds: number) => `(now() - make_interval(secs => ${seconds}))::timestamp`
/** naive, written by an application in New York */
const naiveNewYork = (seconds: number) => `((now() - make_interval(secs => ${seconds})) AT TIME ZONE 'America/New_York')`
const text = (value: string | null) => (value === null ? 'NULL' : `'${value}'`)

function standard(
  name: string,
  idType: string,
  idSql: (row: Seed) => string,
  at: (s: number) => string,
  extra: Partial<Shape> = {},
): Shape {
  const tsType = at === aware ? 'timestamptz' : 'timestamp'
  return {
    name,
    ddl: `CREATE TABLE ${name} (sid ${idType}, active boolean NOT NULL, started ${tsType} NOT NULL, seen ${tsType}, end_a ${tsType}, end_b ${tsType}, secs integer, grp text)`,
    shape: {
      table: name,
      active: 'active',
      endedAt: ['end_a', 'end_b'],
      durationSeconds: 'secs',
      startedAt: 'started',
      lastSeenAt: 'seen',
    },
    mapping: `table: public.${name}\n  columns: { id: sid, active: active, startedAt: started, lastSeenAt: seen, endedAt: [end_a, end_b], durationSeconds: secs, group: grp }`,
    rows: BASE,
    at,
    insert(row) {
      const a = AGES[row.kind]
      const end = a.ended === null ? 'NULL' : at(a.ended)
      return `INSERT INTO ${name} VALUES (${idSql(row)}, ${row.kind !== 'closed'}, ${at(a.started)}, ${at(a.seen)}, ${end}, ${end}, ${a.ended === null ? 'NULL' : a.started - a.ended}, '${row.group}')`
    },
    ...extra,
  }
}

const SHAPES: Shape[] = [
  {
    ...standard('text_ids', 'text PRIMARY KEY', (r) => text(r.id), aware),
  },
  {
    name: 'uuid_ended_only',
    ddl: `CREATE TABLE uuid_ended_only (id uuid PRIMARY KEY, created timestamptz NOT NULL, last_query timestamptz, expired timestamptz, role text)`,
    shape: { table: 'uuid_ended_only', endedAt: ['expired'], startedAt: 'created', lastSeenAt: 'last_query' },
    mapping: `table: public.uuid_ended_only\n  columns: { id: id, startedAt: created, lastSeenAt: last_query, endedAt: expired, group: role }`,
    rows: BASE,
    at: aware,
    insert(row) {
      const a = AGES[row.kind]
      return `INSERT INTO uuid_ended_only VALUES (gen_random_uuid(), ${aware(a.started)}, ${aware(a.seen)}, ${a.ended === null ? 'NULL' : aware(a.ended)}, '${row.group}')`
    },
  },
  standard('bigint_naive', 'bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY', () => 'DEFAULT', naiveLocal),
  {
    // The primary key is (tenant, sid): sid alone repeats across tenants, live and orphaned alike.
    ...standard('composite_key', 'text NOT NULL', (r) => text(r.id), aware),
    ddl: `CREATE TABLE composite_key (tenant int NOT NULL, sid text NOT NULL, active boolean NOT NULL, started timestamptz NOT NULL, seen timestamptz, end_a timestamptz, end_b timestamptz, secs integer, grp text, PRIMARY KEY (tenant, sid))`,
    rows: [1, 2]
      .flatMap((tenant) => BASE.map((row) => ({ ...row, id: row.id!.replace(/\d/, '1'), tenant })))
      .map((row, i) => ({ ...row, tenant: i })),
    insert(row) {
      const a = AGES[row.kind]
      const end = a.ended === null ? 'NULL' : aware(a.ended)
      return `INSERT INTO composite_key VALUES (${row.tenant}, ${text(row.id)}, ${row.kind !== 'closed'}, ${aware(a.started)}, ${aware(a.seen)}, ${end}, ${end}, ${a.ended === null ? 'NULL' : a.started - a.ended}, '${row.group}')`
    },
  },
  {
    // No index at all, and one id shared by a long-closed session, an orphan and a live session.
    ...standard('duplicate_ids', 'text', (r) => text(r.id), aware),
    rows: [
      ...BASE,
      { id: 'a', kind: 'closed', group: 'g1' },
      { id: 'a', kind: 'orphan', group: 'g1' },
      { id: 'a', kind: 'live', group: 'g1' },
    ],
  },
  {
    // Unique but nullable: NULL ids are distinct to a unique index and equal to nothing in SQL.
    ...standard('null_ids', 'text UNIQUE', (r) => text(r.id), aware),
    rows: [
      ...BASE,
      { id: null, kind: 'orphan', group: 'g2' },
      { id: null, kind: 'orphan', group: 'g1' },
      { id: null, kind: 'live', group: 'g2' },
    ],
  },
  {
    // Naive columns written by an app in New York, declared in the mapping.
    ...standard('naive_new_york', 'text PRIMARY KEY', (r) => text(r.id), naiveNewYork),
    mapping: `table: public.naive_new_york\n  columnsTimeZone: America/New_York\n  columns: { id: sid, active: active, startedAt: started, lastSeenAt: seen, endedAt: [end_a, end_b], durationSeconds: secs, group: grp }`,
    shape: {
      table: 'naive_new_york',
      active: 'active',
      endedAt: ['end_a', 'end_b'],
      durationSeconds: 'secs',
      startedAt: 'started',
      lastSeenAt: 'seen',
      silenceInstant: `(COALESCE(seen, started) AT TIME ZONE 'America/New_York')`,
    },
  },
  {
    // Range-partitioned by start, with the orphan index on the parent: ctid alone is not unique here.
    ...standard('partitioned', 'text NOT NULL', (r) => text(r.id), aware),
    ddl: `CREATE TABLE partitioned (sid text NOT NULL, active boolean NOT NULL, started timestamptz NOT NULL, seen timestamptz, end_a timestamptz, end_b timestamptz, secs integer, grp text, PRIMARY KEY (sid, started)) PARTITION BY RANGE (started);
          CREATE TABLE partitioned_old PARTITION OF partitioned FOR VALUES FROM (MINVALUE) TO (now() - interval '2 days');
          CREATE TABLE partitioned_recent PARTITION OF partitioned FOR VALUES FROM (now() - interval '2 days') TO (now() - interval '2 hours');
          CREATE TABLE partitioned_now PARTITION OF partitioned FOR VALUES FROM (now() - interval '2 hours') TO (MAXVALUE);
          CREATE INDEX ON partitioned ((COALESCE(seen, started))) WHERE active`,
  },
]

const run = (args: string[], t: TestDatabase, config: string) =>
  runCli([...args, '--config', config], { env: { WARDEN_DATABASE_URL: t.url, TZ: 'Pacific/Chatham' } })
const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`

/** Every shape on a UTC server; on a +05:30 server, the shapes whose timestamps depend on a zone (and one aware one). */
const RUNS: Array<[string, Shape[]]> = [
  ['UTC', SHAPES],
  ['Asia/Kolkata', SHAPES.filter((s) => ['text_ids', 'bigint_naive', 'naive_new_york'].includes(s.name))],
]

for (const [zone, shapes] of RUNS) {
  // Each shape has its own table: they run side by side.
  describe.concurrent(`session table shapes on a server in ${zone}`, () => {
    let t: TestDatabase
    beforeAll(async () => {
      t = await createTestDatabase(`shapes_${zone}`)
      await t.exec(`ALTER DATABASE "${t.name}" SET timezone = '${zone}'`)
      // the setting applies to new sessions: start the pool over
      await t.db.pool.end()
      const db = new Database({ url: t.url, applicationName: 'warden-test', connectTimeout: 5, statementTimeout: 30, poolMax: 4 })
      t = { ...t, db, exec: (sql, values) => db.pool.query(sql, values) }
      expect((await t.exec('SHOW timezone')).rows[0].TimeZone).toBe(zone)
      await migrate(t.db, 'warden')
    })
    afterAll(async () => {
      await t.drop()
    })

    it.each(shapes.map((s) => [s.name, s] as const))('%s: list, sweep and close are exact and keep the invariants', async (_name, s) => {
      await t.exec(s.ddl)
      for (const row of s.rows) await t.exec(s.insert(row))
      await t.exec(`ANALYZE ${s.shape.table}`)
      const config = writeConfig(`sessions:\n  ${s.mapping}\n  orphanAfter: ${ORPHAN_AFTER}s\n`)
      const orphans = s.rows.filter((r) => r.kind === 'orphan')

      // list: the orphans, with instants that agree with the server's own reading of the columns
      const listed = await run(['sessions', 'list', '--state', 'orphaned', '--limit', '1000', '--json'], t, config)
      expect(listed.code, show(listed)).toBe(0)
      const list = parseJson<{ count: number; sessions: Array<{ lastSeenAt: string }> }>(listed)
      expect(list.count).toBe(orphans.length)
      const seenBySql = (
        await t.exec(
          `SELECT round(EXTRACT(EPOCH FROM ${s.shape.silenceInstant ?? `COALESCE(${s.shape.lastSeenAt}, ${s.shape.startedAt})::timestamptz`}) * 1000)::float8 AS ms
             FROM ${s.shape.table} WHERE ${s.shape.active ? s.shape.active : `${s.shape.endedAt[0]} IS NULL`} ORDER BY 1`,
        )
      ).rows.map((r) => r.ms as number)
      const seenListed = list.sessions.map((row) => Date.parse(row.lastSeenAt)).sort((a, b) => a - b)
      const expectedSeen = seenBySql.slice(0, orphans.length)
      // JavaScript dates keep milliseconds: allow the rounding of the last one
      expect(
        seenListed.map((ms, i) => Math.abs(ms - expectedSeen[i]!) <= 1),
        `lastSeenAt as listed ${JSON.stringify(seenListed)} = the instants SQL reads ${JSON.stringify(expectedSeen)}`,
      ).toEqual(expectedSeen.map(() => true))

      // dry run: counts what the seed made, changes nothing
      let before = await snapshotTable(t, s.shape)
      const dry = await run(['sessions', 'sweep', '--json'], t, config)
      expect(dry.code, show(dry)).toBe(0)
      expect(parseJson(dry)).toMatchObject({ dryRun: true, orphans: orphans.length, closed: 0 })
      await expectInvariants(t, before, { closed: 0 })

      // apply: closes exactly the orphans
      before = await snapshotTable(t, s.shape)
      const swept = await run(['sessions', 'sweep', '--apply', '--batch-size', '2', '--json'], t, config)
      expect(swept.code, show(swept)).toBe(0)
      expect(parseJson(swept)).toMatchObject({ dryRun: false, orphans: orphans.length, closed: orphans.length, remaining: 0 })
      await expectInvariants(t, before, { activeAfter: before.at - ORPHAN_AFTER, closed: orphans.length })

      // bulk close of one group: exactly its open sessions
      const g1Live = s.rows.filter((r) => r.kind === 'live' && r.group === 'g1').length
      before = await snapshotTable(t, s.shape)
      const closed = await run(['sessions', 'close', '--group', 'g1', '--yes', '--json'], t, config)
      expect(closed.code, show(closed)).toBe(0)
      expect(parseJson(closed)).toMatchObject({ matched: g1Live, closed: g1Live, remaining: 0 })
      await expectInvariants(t, before, { closed: g1Live })
    })
  })
}
