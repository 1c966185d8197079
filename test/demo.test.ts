import { existsSync, readdirSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { generateDemoSessions, POST_MORTEM_MAX_SILENT_SECONDS } from '../src/demo/seed.js'
import { parseJson, runCli, spawnCli, type CliResult } from './helpers/cli.js'
import { acceptsConnections, processesUsing } from './helpers/processes.js'

interface SweepJson {
  dryRun: boolean
  orphans: number
  closed: number
  remaining: number | null
  byGroup: Record<string, number>
  sample: Array<{ id: string }>
}
interface SummaryJson {
  open: number
  orphaned: number
  oldestOrphanAgeSeconds: number | null
  byGroup: Record<string, { open: number; orphaned: number }>
}
interface DemoJson {
  database: { url: string; port: number; dataDir: string | null; keepRunning: boolean }
  seed: { seed: number; sessions: number; closed: number; live: number; idle: number; orphaned: number }
  summary: SummaryJson
  stats: { days: number; rows: Array<{ total: number; orphaned: number }> }
  dryRun: SweepJson
  apply: SweepJson
  after: SummaryJson
}

type Run = CliResult & { pid: number; ms: number }

/** runCli, plus the pid: the demo names its data dir after it, which is how leftovers are found. */
async function runDemo(args: string[]): Promise<Run> {
  const started = Date.now()
  const child = spawnCli(['demo', ...args])
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  child.stdin!.end()
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000)
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, pid: child.pid!, ms: Date.now() - started })
    })
  })
}

const dataDirsOf = (pid: number) => readdirSync(tmpdir()).filter((entry) => entry.startsWith(`warden-pg-${pid}-`))

const SEED = ['--quick', '--seed', '7', '--sessions', '2000']
/** What that seed plants, from the generator itself (the demo's orphanAfter is the default 2 h): the figures to expect. */
const PLANTED = generateDemoSessions({ sessions: 2000, seed: 7, orphanAfterSeconds: 7200 }).rows
const plantedIn = (state: string) => PLANTED.filter((row) => row.state === state)
const silence = (row: (typeof PLANTED)[number]) => row.lastActivityAgoSeconds ?? row.startAgoSeconds

describe('warden demo', () => {
  it('--json: seeds sessions, the dry run finds the orphans, the apply closes exactly those, none are left', async () => {
    const run = await runDemo(['--json', ...SEED])
    expect(run.code, run.stderr).toBe(0)
    const json = parseJson<DemoJson>(run)
    const { seed, summary, stats, dryRun, apply, after } = json

    expect(seed).toMatchObject({ seed: 7, sessions: 2000 })
    expect(seed).toMatchObject({
      orphaned: plantedIn('orphaned').length,
      live: plantedIn('live').length,
      idle: plantedIn('idle').length,
      closed: plantedIn('closed').length,
    })
    expect(seed.orphaned).toBeGreaterThan(0)
    expect(seed.closed + seed.live + seed.idle + seed.orphaned).toBe(2000)
    // What the database says before the sweep matches what was seeded.
    expect(summary.orphaned).toBe(seed.orphaned)
    expect(summary.open).toBe(seed.orphaned + seed.live + seed.idle)
    expect(summary.oldestOrphanAgeSeconds).toBeGreaterThanOrEqual(POST_MORTEM_MAX_SILENT_SECONDS)
    expect(Object.keys(summary.byGroup).length).toBeGreaterThanOrEqual(3)
    // The stats window reaches every seeded session, the 444 h orphan included.
    expect(stats.rows.reduce((sum, r) => sum + r.total, 0)).toBe(2000)
    expect(stats.rows.reduce((sum, r) => sum + r.orphaned, 0)).toBe(seed.orphaned)

    expect(dryRun).toMatchObject({ dryRun: true, orphans: seed.orphaned, closed: 0 })
    expect(dryRun.sample.length).toBe(5)
    expect(apply).toMatchObject({ dryRun: false, orphans: dryRun.orphans, closed: dryRun.orphans, remaining: 0 })
    expect(apply.byGroup).toEqual(dryRun.byGroup)
    // Live and idle sessions are not orphans: the sweep must leave every one of them open.
    expect(after).toMatchObject({ orphaned: 0, open: seed.live + seed.idle, oldestOrphanAgeSeconds: null })

    expect(json.database).toMatchObject({ keepRunning: false, dataDir: null })
    expect(dataDirsOf(run.pid)).toEqual([])
    expect(await acceptsConnections(json.database.port)).toBe(false)
  })

  it('human output: the same seed gives the same sessions, and the key lines are there', async () => {
    const run = await runDemo(SEED)
    expect(run.code, run.stderr).toBe(0)
    const out = run.stdout
    expect(out).toContain('seeded public.conversation_sessions: 2000 sessions')
    expect(out).toMatch(/== open sessions by group/)
    expect(out).toContain('oldest orphan started 18d12h ago')
    expect(out).toMatch(/ALERT: \d+ sessions active and silent > 2h/)
    const dry = /DRY RUN: (\d+) orphaned sessions would be closed/.exec(out)
    const closed = /closed (\d+) of (\d+) orphaned sessions/.exec(out)
    expect(dry, out).not.toBeNull()
    expect(closed, out).not.toBeNull()
    expect(Number(closed![1])).toBe(Number(dry![1]))
    expect(out).toMatch(/== after the sweep ==\n\d+ open, 0 orphaned/)
    expect(out).toContain('warden demo --quick --keep-running')
    expect(out).toContain('embedded PostgreSQL stopped; data dir removed')

    // The seed's planted orphans, counted from the generator, and the most silent of them by id.
    expect(Number(dry![1])).toBe(plantedIn('orphaned').length)
    const mostSilent = plantedIn('orphaned').sort((a, b) => silence(b) - silence(a))[0]!
    expect(out).toContain(mostSilent.id)
  })

  it('--quick --keep-running: serves the other commands until SIGINT, then stops postgres and removes the data dir', async () => {
    const child = spawnCli(['demo', '--quick', '--keep-running', '--sessions', '1000', '--seed', '11'])
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal })),
    )
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no database URL within 30 s:\n${stdout}\n${stderr}`)), 30_000)
        child.stdout!.on('data', () => {
          const match = /^database URL: (\S+)$/m.exec(stdout)
          if (match) {
            clearTimeout(timer)
            resolve(match[1]!)
          }
        })
        void exited.then(() => reject(new Error(`demo exited before printing a URL:\n${stdout}\n${stderr}`)))
      })
      const port = Number(new URL(url).port)
      const dataDir = /data dir (\/\S+)\)/.exec(stdout)?.[1]
      expect(dataDir, stdout).toBeDefined()
      expect(existsSync(dataDir!)).toBe(true)

      const orphaned = await runCli(['sessions', 'list', '--state', 'orphaned', '--json', '--database-url', url])
      expect(orphaned.code, orphaned.stderr).toBe(0)
      expect(parseJson(orphaned)).toMatchObject({ state: 'orphaned', count: 0 })
      const active = await runCli(['sessions', 'list', '--state', 'active', '--limit', '10000', '--json', '--database-url', url])
      expect(active.code, active.stderr).toBe(0)
      const openAfter = Number(/== after the sweep ==\n(\d+) open/.exec(stdout)?.[1])
      expect(openAfter).toBeGreaterThan(0)
      expect(parseJson(active)).toMatchObject({ count: openAfter })
      // and the demo's database itself says the same: every planted live and idle session still open, no orphan
      const sql = new pg.Client({ connectionString: url })
      await sql.connect()
      try {
        const { rows } = await sql.query(
          `SELECT (count(*) FILTER (WHERE is_active))::int AS open,
                  (count(*) FILTER (WHERE is_active AND COALESCE(last_activity_at, session_start) < now() - interval '2 hours'))::int AS orphaned
             FROM public.conversation_sessions`,
        )
        expect(rows[0]).toEqual({ open: openAfter, orphaned: 0 })
        const planted = generateDemoSessions({ sessions: 1000, seed: 11, orphanAfterSeconds: 7200 }).rows
        expect(openAfter).toBe(planted.filter((row) => row.state === 'live' || row.state === 'idle').length)
      } finally {
        await sql.end()
      }

      const signalled = Date.now()
      child.kill('SIGINT')
      const { code } = await exited
      expect(code, stderr).toBe(0)
      expect(Date.now() - signalled).toBeLessThan(5000)
      expect(stdout).toContain('embedded PostgreSQL stopped; data dir removed')
      expect(await acceptsConnections(port)).toBe(false)
      expect(existsSync(dataDir!)).toBe(false)
      expect(processesUsing(dataDir!)).toEqual([])
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })

  it('SIGTERM while postgres is still starting: stops it, removes the data dir, exits 143', async () => {
    const child = spawnCli(['demo', '--quick', '--sessions', '100'])
    let stdout = ''
    let signalled = false
    child.stdout!.on('data', (chunk) => {
      stdout += chunk
      // Once only: a second signal gets Node's default and skips the cleanup on purpose.
      if (!signalled && stdout.includes('starting embedded PostgreSQL')) {
        signalled = true
        child.kill('SIGTERM')
      }
    })
    const [code, stderr] = await new Promise<[number | null, string]>((resolve) => {
      let err = ''
      child.stderr!.on('data', (chunk) => (err += chunk))
      child.on('close', (c) => resolve([c, err]))
    })
    expect(code, `${stdout}\n${stderr}`).toBe(143)
    expect(stderr).toContain('interrupted by SIGTERM')
    expect(stdout).not.toContain('DRY RUN')
    expect(dataDirsOf(child.pid!)).toEqual([])
    expect(processesUsing(`warden-pg-${child.pid}-`)).toEqual([])
  })

  it('exits 3 with the reason when postgres cannot start (port taken)', async () => {
    const blocker: Server = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      const run = await runDemo(['--quick', '--pg-port', String(port), '--sessions', '100'])
      expect(run.code, run.stdout + run.stderr).toBe(3)
      expect(run.stderr).toContain('could not start the embedded PostgreSQL')
      expect(run.stderr).toMatch(/could not bind|Address already in use/i)
      expect(dataDirsOf(run.pid)).toEqual([])
    } finally {
      blocker.close()
    }
  })

  it('refuses flags of the other mode: --keep-running without --quick, --port or --duration with --quick', async () => {
    for (const args of [['--keep-running'], ['--quick', '--port', '9999'], ['--quick', '--duration', '10s']]) {
      const run = await runCli(['demo', ...args])
      expect(run.code, args.join(' ')).toBe(64)
      expect(run.stderr).toMatch(/--quick/)
    }
  })

  it('refuses --database-url: the demo never touches a real database', async () => {
    const run = await runCli(['demo', '--database-url', 'postgres://x@127.0.0.1:1/none'])
    expect(run.code).toBe(64)
    expect(run.stderr).toContain('demo runs its own embedded PostgreSQL')
  })
})

describe('demo data generator', () => {
  it('is deterministic per seed and keeps each kind of session on its side of orphanAfter', () => {
    const options = { sessions: 3000, seed: 99, orphanAfterSeconds: 7200 }
    const a = generateDemoSessions(options)
    const b = generateDemoSessions(options)
    const c = generateDemoSessions({ ...options, seed: 100 })
    expect(b.rows).toEqual(a.rows)
    expect(c.rows[0]!.id).not.toBe(a.rows[0]!.id)
    expect(new Set(a.rows.map((r) => r.id)).size).toBe(3000)
    const silent = (r: (typeof a.rows)[number]) => r.lastActivityAgoSeconds ?? r.startAgoSeconds
    for (const row of a.rows) {
      if (row.state === 'orphaned') expect(silent(row)).toBeGreaterThan(7200)
      if (row.state === 'live' || row.state === 'idle') expect(silent(row)).toBeLessThan(7200)
      if (row.state === 'closed') expect(row.endAgoSeconds).toBeGreaterThan(0)
      expect(row.startAgoSeconds).toBeGreaterThanOrEqual(silent(row))
    }
    expect(a.report.oldestOrphanSilentSeconds).toBe(POST_MORTEM_MAX_SILENT_SECONDS)
  })
})
