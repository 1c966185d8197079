import { describe, expect, it } from 'vitest'
import { loadConfig } from '../src/core/config.js'
import { Database } from '../src/db/database.js'
import { migrate } from '../src/db/migrate.js'
import { Fleet } from '../src/fleet/fleet.js'
import { startScheduler, type Scheduler } from '../src/scheduler/scheduler.js'
import type { Outcome } from '../src/sessions/operations.js'
import type { SweepResult } from '../src/sessions/sweep.js'

type SweepOutcome = Outcome<SweepResult>
import { writeConfig } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { sleep, waitFor } from './helpers/wait.js'

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined }

describe('scheduler with the PostgreSQL run coordinator (three replicas)', () => {
  const t = useTestDatabase('scheduler', async (t) => {
    await seedConversationSessions(t, { orphans: 30, live: 10 })
    await migrate(t.db, 'warden')
  })

  it('runs each sweep slot exactly once across replicas, and closes no session twice', async () => {
    const { config } = loadConfig({
      env: {},
      configPath: writeConfig(
        `database: { url: ${t.url} }\nscheduler:\n  sweep: "* * * * * *"\n  sweepApply: true\n  doctor: null\nsweep: { batchSize: 7 }\n`,
      ),
    })
    const replicas: Array<{ fleet: Fleet; scheduler: Scheduler; outcomes: SweepOutcome[] }> = []
    for (const name of ['a', 'b', 'c']) {
      const fleet = new Fleet(config, (target) => new Database({ ...target.database, applicationName: `warden-replica-${name}` }))
      const outcomes: SweepOutcome[] = []
      replicas.push({
        fleet,
        outcomes,
        scheduler: startScheduler({
          fleet,
          config,
          owner: `replica-${name}`,
          logger: quiet,
          hooks: { onSweep: (_t, _s, o) => outcomes.push(o) },
        }),
      })
    }
    // New orphans keep arriving while the replicas sweep, so several slots have work to do.
    for (let wave = 0; wave < 4; wave += 1) {
      await sleep(900)
      await t.exec(
        `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
         SELECT gen_random_uuid(), 'late', 'support-agent', true, now() - interval '6 hours', now() - interval '3 hours' FROM generate_series(1, 10)`,
      )
    }
    // until the last wave is swept and no claimed slot is still running
    await waitFor(
      async () =>
        (
          await t.exec(
            `SELECT (SELECT count(*) FROM conversation_sessions WHERE is_active AND last_activity_at < now() - interval '2 hours') = 0
                AND (SELECT count(*) FROM warden.scheduled_runs WHERE finished_at IS NULL) = 0 AS done`,
          )
        ).rows[0].done === true,
      'the replicas to sweep the last wave of orphans',
    )
    await Promise.all(replicas.map((r) => r.scheduler.stop()))
    await Promise.all(replicas.map((r) => r.fleet.close()))

    const { rows: slots } = await t.exec(`SELECT key, owner, finished_at IS NOT NULL AS finished FROM warden.scheduled_runs ORDER BY key`)
    expect(slots.length).toBeGreaterThanOrEqual(4)
    // One row per slot is the primary key's doing; what matters is who ran: exactly one replica per slot.
    const runs = replicas.flatMap((r) => r.outcomes)
    expect(runs.length).toBe(slots.length)
    // each slot's owner is the replica that ran it: as many slots per owner as that replica's runs
    for (const [index, replica] of replicas.entries())
      expect(slots.filter((s) => s.owner === `replica-${'abc'[index]}`).length, `slots owned by replica-${'abc'[index]}`).toBe(
        replica.outcomes.length,
      )
    expect(slots.filter((s) => !['replica-a', 'replica-b', 'replica-c'].includes(s.owner))).toEqual([])
    expect(slots.every((s) => s.finished)).toBe(true)

    const { rows: audit } = await t.exec(
      `SELECT count(*)::int AS runs, sum(rows_affected)::int AS closed FROM warden.audit_log WHERE NOT dry_run AND command = 'scheduled sweep'`,
    )
    const okRuns = runs.filter((o) => o.status === 'ok')
    expect(audit[0].runs).toBe(okRuns.length)
    const closedByRuns = okRuns.reduce((sum, o) => sum + (o.status === 'ok' ? o.value.json.closed : 0), 0)
    expect(closedByRuns).toBe(70)
    expect(audit[0].closed).toBe(70)
    const { rows: left } = await t.exec(`SELECT count(*)::int AS open FROM conversation_sessions WHERE is_active`)
    expect(left[0].open).toBe(10)
  })

  it('refuses an invalid cron expression with the key and the value', async () => {
    const { config } = loadConfig({ env: {}, configPath: writeConfig(`database: { url: ${t.url} }\nscheduler:\n  sweep: "61 * * * *"\n`) })
    const fleet = new Fleet(config, (target) => new Database(target.database))
    expect(() => startScheduler({ fleet, config, owner: 'x', logger: quiet })).toThrow(
      /scheduler\.sweep = "61 \* \* \* \*": not a valid cron expression/,
    )
  })
})
