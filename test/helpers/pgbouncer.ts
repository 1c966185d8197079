import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from '../../src/embedded/embedded-postgres.js'
import { installCommand, PGBOUNCER_BIN } from '../setup/peers.js'
import { sleep } from './wait.js'

export { PGBOUNCER_BIN }
/** pgbouncer refuses to run as root; as root the tests hand it to this user. */
const RUN_AS = 'postgres'

export interface PgBouncer {
  port: number
  /** the admin console: postgres://postgres@127.0.0.1:port/pgbouncer */
  adminUrl: string
  /** a client URL for `database` through the pooler */
  url: (database: string) => string
  log: () => string
  stop: () => Promise<void>
}

export interface PgBouncerOptions {
  /** the PostgreSQL it pools (host, port, user and password are taken from it) */
  target: string
  poolSize: number
}

/** A clear failure instead of a skip: CI must install the real binary, not quietly test less. */
export function requirePgBouncer(): void {
  if (!existsSync(PGBOUNCER_BIN)) {
    throw new Error(
      `${PGBOUNCER_BIN} is missing: these tests run a real PgBouncer. npm test installs it when run as root; otherwise: ${installCommand(['pgbouncer'])}`,
    )
  }
}

function userIds(name: string): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim()),
  }
}

async function waitForConsole(adminUrl: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`pgbouncer exited during start (${child.exitCode ?? child.signalCode}):\n${log()}`)
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 })
    client.on('error', () => undefined)
    try {
      await client.connect()
      await client.query('SHOW VERSION')
      return
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`pgbouncer did not answer on ${adminUrl}: ${(error as Error).message}\n${log()}`, { cause: error })
      await sleep(50)
    } finally {
      await client.end().catch(() => undefined)
    }
  }
}

/**
 * Starts Debian's pgbouncer on a free loopback port in front of `target`, in transaction mode
 * with a tiny pool so tests can make clients queue. Any database name is routed to the target.
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  requirePgBouncer()
  const target = new URL(options.target)
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'warden-pgbouncer-'))
  const serverLogin = [
    `user=${decodeURIComponent(target.username || 'postgres')}`,
    target.password ? `password=${decodeURIComponent(target.password)}` : '',
  ].join(' ')
  writeFileSync(join(dir, 'userlist.txt'), `"postgres" "postgres"\n`)
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    `[databases]
* = host=${target.hostname} port=${target.port || 5432} ${serverLogin}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'userlist.txt')}
admin_users = postgres
pool_mode = transaction
default_pool_size = ${options.poolSize}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 100
ignore_startup_parameters = extra_float_digits,application_name,statement_timeout,options
logfile = ${join(dir, 'pgbouncer.log')}
pidfile = ${join(dir, 'pgbouncer.pid')}
`,
  )
  const asRoot = userInfo().uid === 0
  if (asRoot) {
    const { uid, gid } = userIds(RUN_AS)
    for (const file of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, file), uid, gid)
  }
  const child = spawn(PGBOUNCER_BIN, [...(asRoot ? ['-u', RUN_AS] : []), join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const log = () => {
    const file = join(dir, 'pgbouncer.log')
    return `${output}${existsSync(file) ? readFileSync(file, 'utf8') : ''}`.split('\n').slice(-30).join('\n')
  }
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/pgbouncer`
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM') // immediate shutdown; SIGINT would wait for clients
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await waitForConsole(adminUrl, child, log)
  } catch (error) {
    await stop()
    throw error
  }
  return { port, adminUrl, url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`, log, stop }
}
