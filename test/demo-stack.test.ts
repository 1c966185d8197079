import { existsSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { parseJson, runCli, spawnCli, type CliResult } from './helpers/cli.js'
import { acceptsConnections, processesUsing } from './helpers/processes.js'
import { parseMetrics, valueOf } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

/** A printed `warden …` line as argv: the bin name and any trailing comment dropped. */
function argvOf(line: string): string[] {
  const [bin, ...args] = line
    .replace(/\s+#.*$/, '')
    .trim()
    .split(/\s+/)
  expect(bin).toBe('warden')
  return args
}

describe('a newcomer runs `warden demo` and pastes the commands it prints', () => {
  const child = { current: undefined as ReturnType<typeof spawnCli> | undefined }
  afterAll(() => {
    if (child.current && child.current.exitCode === null && child.current.signalCode === null) child.current.kill('SIGKILL')
  })

  it('serves the whole product until SIGINT, every printed command works against it, and nothing is left afterwards', async () => {
    const [port, pgPort] = [await freePort(), await freePort()]
    // --duration as a safety net only: the test stops it with SIGINT long before.
    const demo = spawnCli(['demo', '--port', String(port), '--pg-port', String(pgPort), '--sessions', '2000', '--duration', '5m'])
    child.current = demo
    let stdout = ''
    let stderr = ''
    demo.stdout!.on('data', (chunk) => (stdout += chunk))
    demo.stderr!.on('data', (chunk) => (stderr += chunk))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      demo.on('close', (code, signal) => resolve({ code, signal })),
    )
    let done = false
    void exited.then(() => (done = true))

    await waitFor(async () => done || /^ready: /m.test(stdout), 'the ready line', 40_000)
    expect(done, `demo exited before it was ready:\n${stdout}\n${stderr}`).toBe(false)

    const url = /^ {2}service +(http:\/\/\S+)/m.exec(stdout)?.[1]
    const databaseUrl = /^ {2}database +(postgres:\/\/\S+)/m.exec(stdout)?.[1]
    const token = /^ {2}admin token +([0-9a-f]+)/m.exec(stdout)?.[1]
    const dataDir = /data dir (\/\S+)\)/.exec(stdout)?.[1]
    expect(url, stdout).toBe(`http://127.0.0.1:${port}`)
    expect(databaseUrl, stdout).toContain(`:${pgPort}/`)
    expect(token?.length, stdout).toBeGreaterThanOrEqual(32)
    expect(existsSync(dataDir!)).toBe(true)
    for (const path of ['/metrics', '/api/sessions', '/chat/sessions']) expect(stdout).toContain(`${url}${path}`)

    const commands = [...stdout.matchAll(/^ {2}(warden .*)$/gm)].map((m) => m[1]!)
    const printed = (prefix: string) => {
      const line = commands.find((c) => c.startsWith(prefix))
      expect(line, `no "${prefix}" among the printed commands:\n${commands.join('\n')}`).toBeDefined()
      return argvOf(line!)
    }
    const curls = [...stdout.matchAll(/^ {2}(curl .*)$/gm)].map((m) => m[1]!)
    expect(curls.some((c) => c.includes(`${url}/api/sessions`))).toBe(true)
    expect(curls.some((c) => c.includes(`-XPOST ${url}/api/sweeps`) && c.includes(`Bearer ${token}`))).toBe(true)
    expect(commands.some((c) => c.startsWith('warden loadtest') && c.includes('--duration 10s'))).toBe(true)

    // The hold app sits idle in transaction: the probe lists it by application_name.
    const probe: CliResult = await runCli(printed('warden pool probe'))
    expect(probe.code, probe.stderr).toBe(0)
    expect(probe.stdout).toMatch(/demo-hold-app\s+\S+\s+idle in xact/)
    expect(probe.stdout).toMatch(/idle in transaction: [1-9]/)

    // doctor has findings (1 or 2), and names the hold app; 3 (could not run) would be a failure.
    const doctor = await runCli(printed('warden doctor'))
    expect([1, 2], `${doctor.stdout}\n${doctor.stderr}`).toContain(doctor.code)
    expect(doctor.stdout).toMatch(/idle-in-transaction[\s\S]*demo-hold-app/)

    // two targets (the demo's database and the jobs database it made), three session tables, all matching
    const targets = await runCli([...printed('warden targets'), '--json'])
    expect(targets.code, targets.stderr).toBe(0)
    const fleet = parseJson<{
      targets: Array<{ name: string; reachable: boolean; tables: Array<{ name: string; mapping: { ok: boolean } }> }>
    }>(targets)
    expect(fleet.targets.map((t) => [t.name, t.reachable, t.tables.map((table) => table.name)])).toEqual([
      ['chat', true, ['conversations', 'chat-path']],
      ['jobs', true, ['runs']],
    ])
    expect(fleet.targets.flatMap((t) => t.tables).every((table) => table.mapping.ok)).toBe(true)

    const sweepArgs = printed('warden sessions sweep')
    expect(sweepArgs).not.toContain('--apply')
    // The demo's scheduler sweeps every 30 s: if it holds the table's lock at that instant, the CLI
    // exits 5 ("another sweep is running", a documented outcome); the next try gets through.
    const sweepOnce = async (args: string[]) =>
      waitFor(
        async () => {
          const run = await runCli(args)
          return run.code === 5 ? undefined : run
        },
        'a sweep that is not locked out',
        20_000,
        1_000,
      )
    const sweep = await sweepOnce(sweepArgs)
    expect(sweep.code, sweep.stderr).toBe(0)
    const sweepJson = parseJson<{ dryRun: boolean; orphanAfterSeconds: number; orphans: number }>(await sweepOnce([...sweepArgs, '--json']))
    expect(sweepJson).toMatchObject({ dryRun: true, orphanAfterSeconds: 120 })

    // The admin API: reads without a token; the sweep with the printed token, and refused without it.
    const sessions = (await (await fetch(`${url}/api/sessions?target=chat&table=conversations&state=all&limit=5`)).json()) as {
      state: string
      nextOffset: number | null
      sessions: unknown[]
    }
    expect(sessions).toMatchObject({ state: 'all', nextOffset: 5 })
    expect(sessions.sessions.length).toBe(5)
    const sweepBody = JSON.stringify({ apply: true, target: 'chat', table: 'conversations' })
    const refused = await fetch(`${url}/api/sweeps`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: sweepBody })
    expect(refused.status).toBe(401)
    // 409 sweep_running when the scheduled sweep is in the middle of a batch: try again, as a client would.
    const swept = await waitFor(
      async () => {
        const response = await fetch(`${url}/api/sweeps`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: sweepBody,
        })
        return response.status === 409 ? undefined : response
      },
      'a POST /api/sweeps that is not 409',
      20_000,
      500,
    )
    expect(swept.status, await swept.clone().text()).toBe(200)
    expect(await swept.json()).toMatchObject({ dryRun: false, orphanAfterSeconds: 120, remaining: 0 })

    // /metrics: chat traffic through the mock LLM, the session gauges, and the hold app caught holding.
    const metrics = await waitFor(
      async () => {
        const { samples } = parseMetrics(await (await fetch(`${url}/metrics`)).text())
        const llmCalls = samples
          .filter((s) => s.name === 'gen_ai_client_operation_duration_seconds_count')
          .reduce((sum, s) => sum + s.value, 0)
        const active = samples.filter((s) => s.name === 'warden_sessions_active').reduce((sum, s) => sum + s.value, 0)
        return llmCalls > 0 && active > 0 ? samples : undefined
      },
      'gen_ai_* and warden_sessions_* samples',
      30_000,
      500,
    )
    expect(metrics.some((s) => s.name === 'gen_ai_client_token_usage_count' && s.value > 0)).toBe(true)
    expect(metrics.filter((s) => s.name === 'warden_sessions_orphaned').length).toBeGreaterThan(0)
    expect(
      valueOf(metrics, 'warden_db_connection_held_during_llm_call_total', { db_client_connection_pool_name: 'demo-hold-app' }),
    ).toBeGreaterThanOrEqual(1)
    expect(valueOf(metrics, 'warden_pg_up')).toBe(1)

    const signalled = Date.now()
    demo.kill('SIGINT')
    const { code } = await exited
    expect(code, `${stdout}\n${stderr}`).toBe(0)
    // "promptly": traffic, hold app, service, mock LLMs and PostgreSQL all stop well inside this.
    expect(Date.now() - signalled).toBeLessThan(20_000)
    expect(stdout).toMatch(/^stopped: \d+ chat sessions, [1-9]\d* turns/m)
    expect(stdout).toContain('embedded PostgreSQL stopped; data dir removed')
    expect(existsSync(dataDir!)).toBe(false)
    expect(processesUsing(dataDir!)).toEqual([])
    expect(await acceptsConnections(port)).toBe(false)
    expect(await acceptsConnections(pgPort)).toBe(false)
  }, 90_000)

  it('a terminal Ctrl-C (SIGINT to the whole process group, postgres included) still exits 0 and leaves nothing behind', async () => {
    const child = spawnCli(['demo', '--port', '0'], { detached: true })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    try {
      await waitFor(async () => /^ready: /m.test(stdout), 'the ready line', 40_000)
      const dataDir = /data dir (\/\S+)\)/.exec(stdout)?.[1]
      expect(dataDir).toBeDefined()
      process.kill(-child.pid!, 'SIGINT')
      expect(await exited, `stdout:\n${stdout.slice(-1500)}\nstderr:\n${stderr.slice(-3000)}`).toBe(0)
      expect(stdout).toContain('embedded PostgreSQL stopped; data dir removed')
      // postgres is stopped last, by the demo: the chat path could still close its sessions
      expect(stdout + stderr).not.toMatch(/could not close this server's chat sessions|database is unreachable/)
      expect(existsSync(dataDir!)).toBe(false)
      expect(processesUsing(dataDir!)).toEqual([])
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
})
