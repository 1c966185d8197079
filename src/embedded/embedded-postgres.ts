import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ExitCode, WardenError } from '../core/errors.js'
import { reachableBinaries } from './binaries.js'
import { initCluster, PortInUseError, startServer, stopServer, SUPERUSER, type PostgresRun } from './postgres-process.js'
import { blockingDirectory, describeDirectory, postgresUser, type PostgresUser } from './postgres-user.js'

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

/**
 * Where data dirs go: the temp dir, unless the server's user cannot enter it (root with a
 * TMPDIR under its home), then the first of /var/tmp and /tmp that it can.
 */
function dataRoot(user: PostgresUser | null): string {
  const candidates = [...new Set([tmpdir(), '/var/tmp', '/tmp'])].filter((dir) => existsSync(dir))
  const usable = candidates.find((dir) => blockingDirectory(dir, user) === null)
  if (usable !== undefined) return usable
  throw new WardenError(
    `could not start the embedded PostgreSQL: ${user?.name ?? 'you'} cannot enter any temp dir for its data (${describeDirectory(tmpdir())})`,
    ExitCode.unavailable,
    `set TMPDIR to a directory ${user?.name ?? 'you'} can enter`,
  )
}

const DEFAULT_SETTINGS = {
  listen_addresses: '127.0.0.1',
  max_connections: '200',
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
}

/** Starts a throwaway PostgreSQL 18 from npm: initdb + start ≈ 1 s, password auth on loopback only. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const user = postgresUser()
  const root = dataRoot(user)
  sweepStaleDataDirs(root)
  const run: PostgresRun = { binaries: reachableBinaries(user), user, onLog: options.onLog ?? (() => undefined) }
  const password = 'postgres'
  const dataDir = mkdtempSync(join(root, `${DIR_PREFIX}${process.pid}-`))
  const settings = { ...DEFAULT_SETTINGS, ...options.settings }
  let child: ChildProcess
  let port: number
  try {
    await initCluster(run, dataDir, password, root)
    // A free port can be taken by someone else before postgres binds it: pick again then.
    for (let attempt = 1; ; attempt++) {
      port = options.port ?? (await freePort())
      try {
        child = await startServer(run, dataDir, port, settings)
        break
      } catch (error) {
        if (options.port !== undefined || !(error instanceof PortInUseError) || attempt === 3) throw error
      }
    }
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true })
    throw error
  }
  let stopping: Promise<string | null> | undefined
  return {
    url: `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop() {
      stopping ??= stopAndClean(child, dataDir, root, options.keep ?? false)
      return stopping
    },
    halt: () => stopServer(child, STOP_TIMEOUT_MS),
    async resume() {
      child = await startServer(run, dataDir, port, settings)
    },
  }
}

/**
 * A kept data dir is moved out of the stale-dir sweep's reach: its name would mark it as
 * abandoned once this process is gone.
 */
async function stopAndClean(child: ChildProcess, dataDir: string, root: string, keep: boolean): Promise<string | null> {
  await stopServer(child, STOP_TIMEOUT_MS)
  if (!keep) {
    // The async rm unlinks in parallel: about twice as fast as rmSync on a fresh cluster's ~1000 files.
    await rm(dataDir, { recursive: true, force: true })
    return null
  }
  const kept = join(root, `warden-pg-data-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  try {
    renameSync(dataDir, kept)
    return kept
  } catch {
    return dataDir
  }
}
