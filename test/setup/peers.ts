import { execFileSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'

/**
 * The real programs the suite runs next to Warden, from Debian's packages (STACK.md):
 * pgbouncer for test/pgbouncer.test.ts, prometheus and promtool for the alert rules, the
 * exposition check and the live dashboards. The suite installs them itself (as root) or stops
 * at once with the command that does; it never skips what it cannot run.
 */
export interface Peer {
  /** the Debian package */
  package: string
  /** the programs it ships that the tests run, by absolute path */
  binaries: string[]
}

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer'
export const PROMETHEUS_BIN = '/usr/bin/prometheus'
export const PROMTOOL_BIN = '/usr/bin/promtool'

export const DEBIAN_PEERS: readonly Peer[] = [
  { package: 'pgbouncer', binaries: [PGBOUNCER_BIN] },
  { package: 'prometheus', binaries: [PROMETHEUS_BIN, PROMTOOL_BIN] },
]

export interface EnsurePeersOptions {
  peers?: readonly Peer[]
  /** whose privileges decide between installing and asking (default: this process's uid) */
  uid?: number
  /** the package manager to run (default apt-get on PATH) */
  aptGet?: string
  /** used to stop the services the packages start; skipped where it does not exist */
  systemctl?: string
  /** told before apt-get runs, which takes a while */
  onInstall?: (packages: string[]) => void
}

/** The command a person runs when the suite may not install the peers itself. */
export function installCommand(packages: readonly string[]): string {
  return `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages.join(' ')}`
}

const executable = (path: string) => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Installs the missing peers (as root) and returns their packages; throws with the exact command otherwise. */
export function ensurePeers(options: EnsurePeersOptions = {}): string[] {
  const peers = options.peers ?? DEBIAN_PEERS
  const missing = peers.filter((peer) => !peer.binaries.every(executable))
  if (missing.length === 0) return []
  const packages = missing.map((peer) => peer.package)
  const absent = missing.flatMap((peer) => peer.binaries.filter((binary) => !executable(binary)))
  if ((options.uid ?? process.getuid?.()) !== 0) {
    throw new Error(
      `the test suite runs ${absent.join(', ')} for real and they are missing; install them, then run npm test again:\n  ${installCommand(packages)}`,
    )
  }
  const aptGet = options.aptGet ?? 'apt-get'
  options.onInstall?.(packages)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', ...packages],
  ]) {
    try {
      // apt's chatter (debconf notices included) is shown only when it fails.
      execFileSync(aptGet, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 })
    } catch (error) {
      const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
      throw new Error(`installing the suite's peers failed: ${aptGet} ${args.join(' ')}\n${stdout}${stderr}`.trimEnd(), { cause: error })
    }
  }
  stopPackageServices(packages, options.systemctl ?? 'systemctl')
  const still = absent.filter((binary) => !executable(binary))
  if (still.length > 0) throw new Error(`${aptGet} install ${packages.join(' ')} succeeded, but ${still.join(', ')} is still missing`)
  return packages
}

/** The packages' own services would hold 6432 and 9090; the tests start their own instances on free ports. */
function stopPackageServices(services: readonly string[], systemctl: string): void {
  for (const service of services) {
    try {
      execFileSync(systemctl, ['is-active', '--quiet', service], { stdio: 'ignore' })
    } catch {
      continue // not running, or no systemd here
    }
    execFileSync(systemctl, ['stop', service], { stdio: 'ignore' })
  }
}
