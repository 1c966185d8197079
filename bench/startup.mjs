#!/usr/bin/env node
// bench/startup — how long `warden` takes to answer --version / --help, beside the floor it is
// judged against: a Node process that only imports @oclif/core.
//
// Every round runs each command once, in a fresh random order, as its own process; the figures
// are medians over rounds of wall time and of the child's own CPU time (user + system, which is
// steadier than wall time on a shared machine), and each command's ratio to the floor's median. Plain ESM: `npm run bench:startup` builds first.
// Usage: node bench/startup.mjs [--rounds N] [--warmup N] [--baseline DIR] [--json]
//   --baseline DIR: another built Warden tree (bin/run.js), e.g. a checkout of an older commit,
//   measured in the same rounds, so before and after are side by side.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const RUN = join(REPO, 'bin', 'run.js')
const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    baseline: { type: 'string' },
    out: { type: 'string', default: join(REPO, 'bench', 'results') },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (options.help) {
  console.log('usage: node bench/startup.mjs [--rounds 30] [--warmup 3] [--baseline DIR] [--json] [--out bench/results]')
  process.exit(0)
}

const FLOOR = 'import @oclif/core'
const CASES = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: FLOOR, args: ['--input-type=module', '-e', "await import('@oclif/core')"] },
  { name: 'warden --version', args: [RUN, '--version'] },
  { name: 'warden --help', args: [RUN, '--help'] },
  { name: 'warden sessions sweep --help', args: [RUN, 'sessions', 'sweep', '--help'] },
]
if (options.baseline) {
  const base = join(resolve(options.baseline), 'bin', 'run.js')
  CASES.push(
    { name: 'baseline --version', args: [base, '--version'] },
    { name: 'baseline --help', args: [base, '--help'] },
    { name: 'baseline sessions sweep --help', args: [base, 'sessions', 'sweep', '--help'] },
  )
}
const GOAL = 1.3

// Like the tests: none of the developer's Warden settings, and no NODE_ENV (oclif's dev mode).
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('WARDEN_') && key !== 'NODE_ENV'))

/**
 * Each child reports its own CPU time (user + system, all threads, in µs) on fd 3 as it exits:
 * finer than the 10 ms clock ticks the kernel accounts children in. Every case gets this preload.
 */
const CPU_PRELOAD =
  'data:text/javascript,' +
  encodeURIComponent(
    "import { writeSync } from 'node:fs'; process.on('exit', () => { const u = process.cpuUsage(); writeSync(3, String(u.user + u.system)) })",
  )

function once(c) {
  const started = process.hrtime.bigint()
  const result = spawnSync(process.execPath, ['--import', CPU_PRELOAD, ...c.args], {
    cwd: REPO,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  })
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6
  if (result.status !== 0) throw new Error(`${c.name} exited ${result.status}: ${result.stderr}`)
  if (!c.name.startsWith('node') && !c.name.startsWith('import') && result.stderr.trim() !== '')
    throw new Error(`${c.name} wrote to stderr: ${result.stderr}`)
  return { wallMs, cpuMs: Number(result.output[3]) / 1000 }
}

const shuffle = (list) => {
  const copy = [...list]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j], copy[i]]
  }
  return copy
}
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const rounds = Number(options.rounds)
const samples = new Map(CASES.map((c) => [c.name, { wallMs: [], cpuMs: [] }]))
const loadBefore = loadavg()[0]
for (let round = 0; round < Number(options.warmup) + rounds; round++) {
  for (const c of shuffle(CASES)) {
    const sample = once(c)
    if (round < Number(options.warmup)) continue
    samples.get(c.name).wallMs.push(sample.wallMs)
    samples.get(c.name).cpuMs.push(sample.cpuMs)
  }
  process.stderr.write(`\rround ${round + 1}/${Number(options.warmup) + rounds}`)
}
process.stderr.write('\n')

const floor = samples.get(FLOOR)
const floorWall = median(floor.wallMs)
const floorCpu = median(floor.cpuMs)
const rows = CASES.map((c) => {
  const s = samples.get(c.name)
  const wallMs = median(s.wallMs)
  const cpuMs = median(s.cpuMs)
  return { command: c.name, wallMs, cpuMs, wallRatio: wallMs / floorWall, cpuRatio: cpuMs / floorCpu }
})
const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: +(totalmem() / 2 ** 30).toFixed(1), node: process.version },
  loadAverage: { before: loadBefore, after: loadavg()[0] },
  rounds,
  baseline: options.baseline ?? null,
  goal: `warden commands within ${GOAL}x of "${FLOOR}"`,
  rows,
}

const fmt = (n, digits = 0) => n.toFixed(digits)
console.log(`startup, medians of ${rounds} rounds (random order per round); ratios against "${FLOOR}"`)
console.log(`${'command'.padEnd(32)} ${'wall ms'.padStart(8)} ${'ratio'.padStart(6)} ${'cpu ms'.padStart(8)} ${'ratio'.padStart(6)}`)
for (const r of rows) {
  console.log(
    `${r.command.padEnd(32)} ${fmt(r.wallMs).padStart(8)} ${fmt(r.wallRatio, 2).padStart(6)} ${fmt(r.cpuMs, 1).padStart(8)} ${fmt(r.cpuRatio, 2).padStart(6)}`,
  )
}
console.log(
  `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after; ${report.machine.cpus} CPUs, Node ${process.version}`,
)
const over = rows.filter((r) => r.command.startsWith('warden') && r.wallRatio > GOAL)
console.log(
  over.length === 0
    ? `goal met: every warden command within ${GOAL}x (wall)`
    : `over ${GOAL}x (wall): ${over.map((r) => r.command).join(', ')}`,
)

mkdirSync(options.out, { recursive: true })
writeFileSync(join(options.out, `startup-${report.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(report, null, 2))
if (options.json) console.log(JSON.stringify(report))
