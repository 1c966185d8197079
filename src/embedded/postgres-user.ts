import { execFileSync } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { ExitCode, WardenError } from '../core/errors.js'

/** The unprivileged account PostgreSQL runs as when Warden runs as root (postgres refuses root). */
export interface PostgresUser {
  name: string
  uid: number
  gid: number
}

const NAME = 'postgres'

/**
 * Who runs initdb and postgres: null for "this process's own user"; as root, the `postgres`
 * account, created (as a system user without a home) when the machine has none.
 */
export function postgresUser(): PostgresUser | null {
  if (process.getuid?.() !== 0) return null
  return lookUp() ?? create()
}

function lookUp(): PostgresUser | null {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, NAME], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
    return { name: NAME, uid: id('-u'), gid: id('-g') }
  } catch {
    return null
  }
}

function create(): PostgresUser {
  const run = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    try {
      run('getent', ['group', NAME])
    } catch {
      run('groupadd', ['--system', NAME])
    }
    run('useradd', ['--system', '--gid', NAME, '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', NAME])
  } catch (error) {
    const detail = String((error as { stderr?: string }).stderr ?? (error as Error).message).trim()
    throw new WardenError(
      `could not start the embedded PostgreSQL: it cannot run as root, and creating the "${NAME}" user to run it failed (${detail})`,
      ExitCode.unavailable,
      `create the user yourself (useradd --system ${NAME}), or run Warden as a normal user`,
    )
  }
  const created = lookUp()
  if (created === null) throw new Error(`useradd ${NAME} succeeded but "id ${NAME}" does not find the user`)
  return created
}

/**
 * The first directory on the way to `path` that `user` may not enter (search permission), or
 * null when it can reach `path`. The child runs with only its primary group (libuv drops the
 * supplementary ones on setuid), so only that group counts; ACLs are not read.
 */
export function blockingDirectory(path: string, user: PostgresUser | null): string | null {
  const chain: string[] = []
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    chain.unshift(dir)
    if (dirname(dir) === dir) break
  }
  for (const dir of chain) {
    if (!statSync(dir).isDirectory()) continue
    if (!searchable(dir, user)) return dir
  }
  return null
}

function searchable(dir: string, user: PostgresUser | null): boolean {
  if (user === null) {
    try {
      accessSync(dir, constants.X_OK)
      return true
    } catch {
      return false
    }
  }
  const stat = statSync(dir)
  const bit = stat.uid === user.uid ? 0o100 : stat.gid === user.gid ? 0o010 : 0o001
  return (stat.mode & bit) !== 0
}

/** "/root (mode 700, owner uid 0)": what a message needs to say about a blocking directory. */
export function describeDirectory(dir: string): string {
  const stat = statSync(dir)
  return `${dir} (mode ${(stat.mode & 0o7777).toString(8)}, owner uid ${stat.uid})`
}
