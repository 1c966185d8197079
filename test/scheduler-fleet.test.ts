import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { Database } from '../src/db/database.js'
import { migrate } from '../src/db/migrate.js'
import { Fleet } from '../src/fleet/fleet.js'
import { startScheduler } from '../src/scheduler/scheduler.js'
import { writeConfig } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { expectInvariants, snapshotTable, type TableSnapshot } from './helpers/invariants.js'
import { waitFor } from './helpers/server.js'

const TABLES = 8
const ORPHANS_PER_TABLE = 5
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined }
const shape = (i: number) => ({ table: `runs_${i}`, endedAt: ['finished_at'], startedAt: 'started_at', lastSeenAt: 'heartbeat_at' })

describe('scheduled sweeps of many tables over three replicas', () => {
  let t: TestDatabase
  beforeAll(async () => {
    t = await createTestDatabase('sched_fleet')
    await migrate(t.db, 'warden')
    for (let i = 0; i < TABLES; i += 1) {
      await t.exec(
        `CREATE TABLE runs_${i} (run_id bigserial PRIMARY KEY, started_at timestamptz NOT NULL, heartbeat_at timestamptz, finished_at timestamptz)`,
      )
      await t.exec(
        `INSERT INTO runs_${i} (started_at, heartbeat_at) SELECT now() - interval '3 hours', now() - interval '2 hours' FROM generate_series(1, ${ORPHANS_PER_TABLE})`,
      )
      await t.exec(`INSERT INTO runs_${i} (started_at, heartbeat_at) VALUES (now(), now())`)
    }
  })
  afterAll(async () => {
    await t?.drop()
  })

  it('run each table’s slot once, close each orphan once, and spread the tables over the replicas', async () => {
    const sessions = Array.from(
      { length: TABLES },
      (_, i) =>
        `      - { table: public.runs_${i}, columns: { id: run_id, startedAt: started_at, lastSeenAt: heartbeat_at, endedAt: finished_at }, orphanAfter: 1h }`,
    )
    const { config } = loadConfig({
      env: {},
      configPath: writeConfig(
        [
          `targets:`,
          `  - name: jobs`,
          `    databaseUrl: ${t.url}`,
          `    sessions:`,
          ...sessions,
          `scheduler:`,
          `  sweep: "* * * * * *"`,
          `  sweepApply: true`,
          '',
        ].join('\n'),
      ),
    })
    const before: TableSnapshot[] = []
    for (let i = 0; i < TABLES; i += 1) before.push(await snapshotTable(t, shape(i)))
    const replicas = ['a', 'b', 'c'].map((name) => {
      const fleet = new Fleet(config, (target) => new Database({ ...target.database, applicationName: `replica-${name}` }))
      return { fleet, scheduler: startScheduler({ fleet, config, owner: `replica-${name}`, logger: quiet }) }
    })
    try {
      // Done when every table's orphans are closed (a claimed slot alone is not: its sweep may
      // still be running when the replicas are stopped).
      await waitFor(
        async () => {
          const open = []
          for (let i = 0; i < TABLES; i += 1)
            open.push((await t.exec(`SELECT count(*)::int AS n FROM runs_${i} WHERE finished_at IS NULL`)).rows[0].n as number)
          return open.every((n) => n === 1) || undefined
        },
        'every table swept (one open row left in each)',
        30_000,
      )
    } finally {
      await Promise.all(replicas.map((r) => r.scheduler.stop()))
      await Promise.all(replicas.map((r) => r.fleet.close()))
    }
    for (let i = 0; i < TABLES; i += 1)
      await expectInvariants(t, before[i]!, { activeAfter: before[i]!.at - 3600, closed: ORPHANS_PER_TABLE })
    const { rows: slots } = await t.exec(`SELECT key, owner FROM warden.scheduled_runs`)
    // one row per (table, slot) is the primary key's doing; the owners show the spread
    const owners = new Set(slots.map((s) => s.owner as string))
    expect(owners.size, `owners of ${slots.length} slots: ${[...owners].join(', ')}`).toBeGreaterThanOrEqual(2)
    const { rows: audit } = await t.exec(`SELECT sum(rows_affected)::int AS closed FROM warden.audit_log WHERE NOT dry_run`)
    expect(audit[0].closed).toBe(TABLES * ORPHANS_PER_TABLE)
  })
})
