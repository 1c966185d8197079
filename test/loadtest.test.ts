import { describe, expect, it } from 'vitest'
import { startChatServer } from '../src/chat/server.js'
import { migrate } from '../src/db/migrate.js'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { startMockLlm } from '../src/llm/mock-server.js'
import type { PatternResult } from '../src/loadtest/run.js'
import { parseJson, runCli, spawnCli } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { waitFor } from './helpers/wait.js'

/**
 * The load test as a user runs it: the built CLI in a subprocess, a test database (or its own embedded PostgreSQL),
 * the mock LLM and the chat path on loopback. Bounds are loose on purpose (a noisy 2-core
 * machine): what must hold exactly is the bookkeeping (cost rows = replies, no held
 * connection, no pool timeout in release), and that release leaves hold far behind.
 */
describe('warden loadtest', () => {
  // the first test's chat path writes here (--database-url), so its cost rows are counted with SQL
  const costs = useTestDatabase('loadtest_costs')

  it("release reaches the Little's-law limit with no pool timeout and one cost row per reply; hold stays far below it", async () => {
    // 1 s calls keep the fixed per-turn cost (HTTP, two statements, scheduling on a busy box) small next to the call.
    const result = await runCli(
      [
        'loadtest',
        '--concurrency',
        '20',
        '--pool-max',
        '5',
        '--llm-latency',
        '1s',
        '--duration',
        '4s',
        '--database-url',
        costs.url,
        '--json',
      ],
      { timeoutMs: 60_000 },
    )
    expect(result.code, result.stderr).toBe(0)
    const [release, hold] = parseJson<PatternResult[]>(result)
    expect(release).toMatchObject({
      pattern: 'release',
      concurrency: 20,
      llmLatencyMs: 1000,
      poolMax: 5,
      errors: {},
      poolTimeouts: 0,
      heldDuringLlmCalls: 0,
    })
    const limit = 20 / 1
    expect(release!.throughput).toBeGreaterThanOrEqual(0.8 * limit)
    expect(release!.littleLawRatio).toBeCloseTo(release!.throughput / limit, 2)
    expect(release!.llmRequestsRows).toBe(release!.successes)
    expect(release!.llmErrorRows).toBe(0)
    expect(release!.latencyMs.p50).toBeGreaterThanOrEqual(1000)
    expect(release!.latencyMs.p99).toBeGreaterThanOrEqual(release!.latencyMs.p50!)
    expect(release!.maxServerConnections).toBeGreaterThanOrEqual(1)
    expect(release!.maxServerConnections).toBeLessThanOrEqual(5)
    expect(release!.poolWaitP99Ms).toEqual(expect.any(Number))

    expect(hold).toMatchObject({ pattern: 'hold', concurrency: 20, llmLatencyMs: 1000 })
    expect(hold!.throughput).toBeLessThanOrEqual(0.6 * release!.throughput)
    // every hold turn made its LLM call holding its connection: the detector saw each one
    expect(hold!.heldDuringLlmCalls).toBe(hold!.successes)
    expect(hold!.llmRequestsRows).toBe(hold!.successes)
    expect(hold!.maxServerConnections).toBe(5)
    expect(hold!.poolWaitP99Ms!).toBeGreaterThan(release!.poolWaitP99Ms!)
    expect(result.stderr).toMatch(/release: \d+ s, \d+ turns ok, \d+ errors/)
    // one ok cost row per successful turn of both patterns, counted in the database itself
    const { rows } = await costs.exec(
      `SELECT count(*) FILTER (WHERE status = 'ok')::int AS ok, count(*)::int AS n FROM warden.llm_requests`,
    )
    expect(rows[0]).toEqual({ ok: release!.successes + hold!.successes, n: release!.successes + hold!.successes })
  })

  it('streams, and --requests bounds a run by turns; the human report puts the figures side by side', async () => {
    const result = await runCli(
      ['loadtest', '--pattern', 'release', '--stream', '--requests', '40', '--concurrency', '8', '--turns', '3', '--llm-latency', '100ms'],
      { timeoutMs: 60_000 },
    )
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/8 virtual users, LLM call 100 ms \(streaming\), pool max 10/)
    const successes = Number(/successful turns\s+(\d+)/.exec(result.stdout)?.[1])
    expect(successes).toBeGreaterThanOrEqual(40)
    expect(result.stdout).toMatch(new RegExp(`llm_requests rows \\(ok / error\\)\\s+${successes} / 0`))
    expect(result.stdout).toMatch(/held during LLM call\s+0/)
  })

  it('Ctrl-C stops a long run within a call or two, reports what it measured and exits 130', async () => {
    const child = spawnCli(['loadtest', '--duration', '30s', '--llm-latency', '200ms', '--concurrency', '5', '--json'])
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    const closed = new Promise<number | null>((resolve) => child.once('close', resolve))
    await waitFor(() => /release: \d+ s/.test(stderr), 'the first progress line ("release: N s") on stderr', 30_000, 50)
    const t0 = Date.now()
    child.kill('SIGINT')
    expect(await closed).toBe(130)
    expect(Date.now() - t0).toBeLessThan(10_000)
    const results = JSON.parse(stdout) as PatternResult[]
    expect(results.map((r) => [r.pattern, r.interrupted])).toEqual([['release', true]])
    expect(results[0]!.llmRequestsRows).toBe(results[0]!.successes)
  })

  describe('against a running chat path (--target-url)', () => {
    const t = useTestDatabase('loadtest_target', async (t) => {
      await migrate(t.db, 'warden')
    })

    it('drives it and counts its cost rows; a target whose every turn fails exits 70 with the errors by kind', async () => {
      const mock = await startMockLlm({ latencyMs: 30 })
      const healthy = await startChatServer({
        databaseUrl: t.url,
        llm: { baseURL: mock.url, apiKey: 'k', maxRetries: 0 },
        model: 'm',
        poolMax: 4,
      })
      const broken = await startChatServer({
        databaseUrl: t.url,
        llm: { baseURL: `http://127.0.0.1:${await freePort()}`, apiKey: 'k', maxRetries: 0 },
        model: 'm',
        poolMax: 2,
      })
      try {
        const common = [
          'loadtest',
          '--pattern',
          'release',
          '--requests',
          '20',
          '--concurrency',
          '4',
          '--llm-latency',
          '30ms',
          '--database-url',
          t.url,
          '--json',
        ]
        const [ok, failing] = await Promise.all([
          runCli([...common, '--target-url', healthy.chatUrl], { timeoutMs: 30_000 }),
          runCli([...common, '--target-url', broken.chatUrl], { timeoutMs: 30_000 }),
        ])
        expect(ok.code, ok.stderr).toBe(0)
        const [run] = parseJson<PatternResult[]>(ok)
        expect(run!.successes).toBeGreaterThanOrEqual(20)
        expect(run!.llmRequestsRows).toBe(run!.successes)
        // counted independently: the rows in the database and the calls the mock LLM answered
        const { rows } = await t.exec(`SELECT status, count(*)::int AS n FROM warden.llm_requests GROUP BY status`)
        const byStatus = Object.fromEntries(rows.map((row) => [row.status, row.n]))
        expect(byStatus.ok).toBe(mock.stats().byStatus['200'])
        expect(byStatus.ok).toBe(run!.successes)
        // the target's pool is not ours to read
        expect(run).toMatchObject({ poolWaitP99Ms: null, heldDuringLlmCalls: null, maxServerConnections: null })

        expect(failing.code, failing.stderr).toBe(70)
        const [failed] = parseJson<PatternResult[]>(failing)
        expect(failed!.successes).toBe(0)
        expect(failed!.errors.llm_unavailable).toBeGreaterThan(0)
        expect(failed!.llmErrorRows).toBe(failed!.errors.llm_unavailable)
        expect(byStatus.error).toBe(failed!.errors.llm_unavailable)
        expect(failing.stderr).toMatch(/no turn succeeded/)
      } finally {
        await Promise.all([healthy.close({ graceMs: 0 }), broken.close({ graceMs: 0 })])
        await mock.close()
      }
    })

    it('refuses a non-loopback target without --allow-remote, and --pattern both with a target', async () => {
      const [remote, both] = await Promise.all([
        runCli(['loadtest', '--target-url', 'http://10.20.30.40:9478/chat', '--pattern', 'release']),
        runCli(['loadtest', '--target-url', 'http://127.0.0.1:9/chat']),
      ])
      expect(remote.code).toBe(64)
      expect(remote.stderr).toMatch(/10\.20\.30\.40 is not on this machine/)
      expect(remote.stderr).toMatch(/--allow-remote/)
      expect(both.code).toBe(64)
      expect(both.stderr).toMatch(/not both/)
    })
  })
})
