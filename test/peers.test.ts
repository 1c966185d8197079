import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DEBIAN_PEERS, ensurePeers, installCommand, type Peer } from './setup/peers.js'

/**
 * The global setup's install step, on stand-ins: the machine's real pgbouncer and prometheus
 * stay installed (others use them), so the peers here are paths in a temp dir, and apt-get and
 * systemctl are scripts that record how they were called. The real "packages removed" run is
 * `apt-get remove pgbouncer prometheus && npm test` on a machine of one's own.
 */
function sandbox(options: { aptGetExit?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'warden-peers-'))
  const calls = join(dir, 'calls.log')
  const peers: Peer[] = [
    { package: 'pgbouncer', binaries: [join(dir, 'sbin', 'pgbouncer')] },
    { package: 'prometheus', binaries: [join(dir, 'bin', 'prometheus'), join(dir, 'bin', 'promtool')] },
  ]
  const script = (name: string, body: string) => {
    const path = join(dir, name)
    writeFileSync(path, `#!/bin/sh\necho "${name} DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> ${calls}\n${body}\n`)
    chmodSync(path, 0o755)
    return path
  }
  // Like apt-get install: afterwards the package's programs exist.
  const installs = peers
    .map(
      (peer) =>
        `*" ${peer.package}"*) ${peer.binaries.map((b) => `mkdir -p $(dirname ${b}); printf '#!/bin/sh\\n' > ${b}; chmod 755 ${b}`).join('; ')};;`,
    )
    .join('\n')
  const aptGet = script(
    'apt-get',
    options.aptGetExit
      ? `[ "$1" = install ] && { echo "E: Unable to locate package pgbouncer" >&2; exit ${options.aptGetExit}; }; exit 0`
      : `[ "$1" = install ] && for p in "$@"; do case " $p" in\n${installs}\nesac; done; exit 0`,
  )
  // pgbouncer's service is running after its install, prometheus's is not.
  const systemctl = script('systemctl', '[ "$1" = is-active ] && [ "$3" = pgbouncer ] && exit 0; [ "$1" = stop ] && exit 0; exit 3')
  return { dir, peers, aptGet, systemctl, calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []) }
}

/** An executable program at `path`, as a package would leave it. */
function provide(path: string): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, '#!/bin/sh\n', { mode: 0o755 })
}

describe("the suite's real peers (global setup)", () => {
  // This machine's own environment sets it; the install must set it by itself.
  const ambient = process.env.DEBIAN_FRONTEND
  beforeEach(() => delete process.env.DEBIAN_FRONTEND)
  afterEach(() => {
    if (ambient !== undefined) process.env.DEBIAN_FRONTEND = ambient
  })

  it('names the Debian packages and the programs the tests run', () => {
    expect(DEBIAN_PEERS).toEqual([
      { package: 'pgbouncer', binaries: ['/usr/sbin/pgbouncer'] },
      { package: 'prometheus', binaries: ['/usr/bin/prometheus', '/usr/bin/promtool'] },
    ])
  })

  it('does nothing when every program is there, root or not', () => {
    const s = sandbox()
    for (const binary of s.peers.flatMap((p) => p.binaries)) provide(binary)
    for (const uid of [0, 1000]) expect(ensurePeers({ peers: s.peers, uid, aptGet: s.aptGet, systemctl: s.systemctl })).toEqual([])
    expect(s.calls()).toEqual([])
  })

  it('not root: stops at once with the exact command to run, and runs nothing', () => {
    const s = sandbox()
    expect(() => ensurePeers({ peers: s.peers, uid: 1000, aptGet: s.aptGet, systemctl: s.systemctl })).toThrow(
      `the test suite runs ${s.dir}/sbin/pgbouncer, ${s.dir}/bin/prometheus, ${s.dir}/bin/promtool for real and they are missing; install them, then run npm test again:\n` +
        '  sudo apt-get update && sudo apt-get install -y --no-install-recommends pgbouncer prometheus',
    )
    expect(installCommand(['pgbouncer'])).toBe('sudo apt-get update && sudo apt-get install -y --no-install-recommends pgbouncer')
    expect(s.calls()).toEqual([])
  })

  it('root: installs exactly the missing packages, non-interactively, and stops the service one of them started', () => {
    const s = sandbox()
    const told: string[][] = []
    const installed = ensurePeers({ peers: s.peers, uid: 0, aptGet: s.aptGet, systemctl: s.systemctl, onInstall: (p) => told.push(p) })
    expect(installed).toEqual(['pgbouncer', 'prometheus'])
    expect(told).toEqual([['pgbouncer', 'prometheus']])
    expect(s.calls()).toEqual([
      'apt-get DEBIAN_FRONTEND=noninteractive update -qq',
      'apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends pgbouncer prometheus',
      'systemctl DEBIAN_FRONTEND= is-active --quiet pgbouncer',
      'systemctl DEBIAN_FRONTEND= stop pgbouncer',
      'systemctl DEBIAN_FRONTEND= is-active --quiet prometheus',
    ])
    // Now present: a second run installs nothing.
    expect(ensurePeers({ peers: s.peers, uid: 0, aptGet: s.aptGet, systemctl: s.systemctl })).toEqual([])
    expect(s.calls()).toHaveLength(5)
  })

  it('root: only what is missing (prometheus there, pgbouncer not)', () => {
    const s = sandbox()
    for (const binary of s.peers[1]!.binaries) provide(binary)
    expect(ensurePeers({ peers: s.peers, uid: 0, aptGet: s.aptGet, systemctl: join(s.dir, 'no-systemctl') })).toEqual(['pgbouncer'])
    expect(s.calls()).toEqual([
      'apt-get DEBIAN_FRONTEND=noninteractive update -qq',
      'apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends pgbouncer',
    ])
  })

  it("root: a failing apt-get stops the run with apt-get's own output", () => {
    const s = sandbox({ aptGetExit: 100 })
    expect(() => ensurePeers({ peers: s.peers, uid: 0, aptGet: s.aptGet, systemctl: s.systemctl })).toThrow(
      /installing the suite's peers failed: .*apt-get install -y -qq --no-install-recommends pgbouncer prometheus\nE: Unable to locate package pgbouncer/,
    )
  })
})
