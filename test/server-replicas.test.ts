import { hostname } from 'node:os'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { spawnCli, writeConfig } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { parseMetrics } from './helpers/server.js'
import { sleep, waitFor } from './helpers/wait.js'

describe('three warden serve replicas with the scheduler on', () => {
  const t = useTestDatabase('replicas', async (t) => {
    await seedConversationSessions(t, { orphans: 40, live: 10 })
    await migrate(t.db, 'warden')
  })

  it('run each sweep slot exactly once between them and close no session twice (audit rows prove it)', async () => {
    const config = writeConfig(
      `database:\n  url: ${t.url}\nserver:\n  port: 0\n  collectInterval: 1s\nscheduler:\n  sweep: "*/2 * * * * *"\n  sweepApply: true\n  doctor: null\nsweep:\n  batchSize: 9\n`,
    )
    const replicas = ['a', 'b', 'c'].map((name) => {
      const child = spawnCli(['serve', '--config', config, '--log-format', 'json'], { env: { WARDEN_APPLICATION_NAME: `warden-${name}` } })
      let stderr = ''
      child.stderr!.on('data', (chunk) => (stderr += chunk))
      child.stdout!.resume()
      return { child, exited: once(child, 'exit'), url: () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1] }
    })
    try {
      const urls = await Promise.all(replicas.map((r) => waitFor(async () => r.url(), 'a replica to listen')))
      // Orphans keep arriving so that several slots have work.
      for (let wave = 0; wave < 3; wave += 1) {
        await sleep(2000)
        await t.exec(
          `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
           SELECT gen_random_uuid(), 'late', 'code-agent', true, now() - interval '5 hours', now() - interval '3 hours' FROM generate_series(1, 10)`,
        )
      }
      await waitFor(async () => {
        const { rows } = await t.exec(
          `SELECT count(*)::int AS n FROM conversation_sessions WHERE is_active AND last_activity_at < now() - interval '2 hours'`,
        )
        return rows[0].n === 0
      }, 'the replicas to sweep every orphan')
      // Exactly once: the sweeps all replicas ran add up to the slots claimed. Read between two
      // counts of the slots so that a slot firing meanwhile cannot skew the comparison.
      const runsPerReplica = () =>
        Promise.all(
          urls.map(async (url) => {
            const samples = parseMetrics(await (await fetch(`${url}/metrics`)).text()).samples
            return samples.filter((s) => s.name === 'warden_sweep_runs_total').reduce((sum, s) => sum + s.value, 0)
          }),
        )
      let perReplica: number[] = []
      const slotsClaimed = async () => (await t.exec(`SELECT count(*)::int AS n FROM warden.scheduled_runs`)).rows[0].n as number
      const settled = await waitFor(async () => {
        const before = await slotsClaimed()
        perReplica = await runsPerReplica()
        const runs = perReplica.reduce((a, b) => a + b, 0)
        const after = await slotsClaimed()
        return before === after && runs === after ? after : undefined
      }, 'the sweeps run to equal the slots claimed')
      expect(settled).toBeGreaterThanOrEqual(3)
      for (const replica of replicas) replica.child.kill('SIGTERM')
      const codes = await Promise.all(replicas.map((r) => r.exited))
      expect(codes.map(([code]) => code)).toEqual([0, 0, 0])

      // each slot's owner (host:pid) is the replica that ran it: as many slots per owner as its runs
      const { rows: owners } = await t.exec(`SELECT owner, count(*)::int AS n FROM warden.scheduled_runs GROUP BY owner`)
      const ownerOf = replicas.map((r) => `${hostname()}:${r.child.pid}`)
      expect(owners.filter((o) => !ownerOf.includes(o.owner))).toEqual([])
      expect(ownerOf.map((owner) => owners.find((o) => o.owner === owner)?.n ?? 0)).toEqual(perReplica)
      const { rows: audit } = await t.exec(
        `SELECT count(*)::int AS runs, sum(rows_affected)::int AS closed, count(DISTINCT actor)::int AS actors FROM warden.audit_log WHERE NOT dry_run AND command = 'scheduled sweep'`,
      )
      expect(audit[0].closed).toBe(70)
      expect(audit[0].runs).toBeLessThanOrEqual(await slotsClaimed())
      const { rows: states } = await t.exec(`SELECT is_active, count(*)::int AS n FROM conversation_sessions GROUP BY 1 ORDER BY 1`)
      expect(states).toEqual([
        { is_active: false, n: 70 },
        { is_active: true, n: 10 },
      ])
    } finally {
      for (const replica of replicas) replica.child.kill('SIGKILL')
    }
  })
})
