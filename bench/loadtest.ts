/**
 * Release before call vs hold, side by side, at the scale of the post-mortems: pool max 10,
 * LLM calls of 1 s, 50 / 200 / 500 concurrent users, plus one streaming run, each pattern
 * measured for the same window in one process run. Records the machine and the load average
 * around every run (this box is shared: a busy neighbour shows up there first).
 *
 *   node --import tsx bench/loadtest.ts [--duration 20s] [--concurrency 50,200,500] [--stream-concurrency 200]
 *                                      [--pool-max 10] [--llm-latency 1s] [--database-url URL] [--json] [--out FILE]
 *
 * Without --database-url it starts an embedded PostgreSQL. Targets (release): ≥ 95 % of the
 * Little's-law limit, p99 ≤ 1.25 × the LLM latency, zero pool timeouts.
 */
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { parseDuration } from '../src/core/duration.js'
import { Database } from '../src/db/database.js'
import { migrate } from '../src/db/migrate.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { runLoadtest, type PatternResult } from '../src/loadtest/run.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20s' },
    concurrency: { type: 'string', default: '50,200,500' },
    'stream-concurrency': { type: 'string', default: '200' },
    'pool-max': { type: 'string', default: '10' },
    'pool-timeout': { type: 'string', default: '5s' },
    'llm-latency': { type: 'string', default: '1s' },
    turns: { type: 'string', default: '5' },
    'database-url': { type: 'string' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
})
const ms = (text: string) => Math.round((parseDuration(text) ?? Number.NaN) * 1000)
const durationMs = ms(args.duration)
const llmLatencyMs = ms(args['llm-latency'])
const poolMax = Number(args['pool-max'])
const levels = args.concurrency.split(',').map(Number)
const streamLevel = Number(args['stream-concurrency'])

interface Row extends PatternResult {
  loadBefore: number
  loadAfter: number
  targetsMet: boolean | null
  missed: string[]
}

function targets(r: PatternResult): { met: boolean | null; missed: string[] } {
  if (r.pattern !== 'release') return { met: null, missed: [] }
  const missed: string[] = []
  if (r.littleLawRatio < 0.95) missed.push(`throughput ${(r.littleLawRatio * 100).toFixed(1)} % < 95 %`)
  if ((r.latencyMs.p99 ?? Infinity) > 1.25 * r.llmLatencyMs) missed.push(`p99 ${r.latencyMs.p99} ms > ${1.25 * r.llmLatencyMs} ms`)
  if (r.poolTimeouts !== 0) missed.push(`${r.poolTimeouts} pool timeouts`)
  if (r.llmRequestsRows !== r.successes) missed.push(`${r.llmRequestsRows} cost rows for ${r.successes} replies`)
  return { met: missed.length === 0, missed }
}

function machine(serverVersion: string) {
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    cpuModel =
      execFileSync('lscpu', { encoding: 'utf8' })
        .match(/Model name:\s*(.+)/)?.[1]
        ?.trim() ?? cpuModel
  } catch {
    // lscpu missing: keep Node's answer
  }
  return {
    nproc: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    cpuModel,
    node: process.version,
    postgres: serverVersion,
    loadAverage: loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  }
}

const cell = (v: number | null | undefined, digits = 0) => (v === null || v === undefined ? '-' : v.toFixed(digits))
const errs = (e: Record<string, number>) =>
  Object.entries(e)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || '0'

function markdown(rows: Row[]): string {
  const head =
    '| run | C | throughput (turns/s) | of C/L | p50 / p95 / p99 (ms) | errors | pool wait p99 (ms) | pool timeouts | held during LLM | max conns | llm_requests rows / replies | server loop busy | CPU ms/turn: server / PG / clients / mock | load avg before→after | targets |'
  const sep = `|${head
    .split('|')
    .slice(1, -1)
    .map(() => '---')
    .join('|')}|`
  const lines = rows.map((r) =>
    [
      `${r.pattern}${r.stream ? ' (stream)' : ''}`,
      r.concurrency,
      cell(r.throughput, 1),
      `${cell(r.littleLawRatio * 100, 1)} %`,
      `${cell(r.latencyMs.p50)} / ${cell(r.latencyMs.p95)} / ${cell(r.latencyMs.p99)}`,
      errs(r.errors),
      cell(r.poolWaitP99Ms, 1),
      cell(r.poolTimeouts),
      cell(r.heldDuringLlmCalls),
      cell(r.maxServerConnections),
      `${r.llmRequestsRows} / ${r.successes}`,
      cell(r.serverEventLoopUtilization, 2),
      `${cell(r.cpuMsPerTurn.chatServer, 2)} / ${cell(r.cpuMsPerTurn.postgres, 2)} / ${cell(r.cpuMsPerTurn.loadGenerator, 2)} / ${cell(r.cpuMsPerTurn.mockLlm, 2)}`,
      `${r.loadBefore.toFixed(1)}→${r.loadAfter.toFixed(1)}`,
      r.targetsMet === null ? '-' : r.targetsMet ? 'met' : `missed: ${r.missed.join('; ')}`,
    ].join(' | '),
  )
  return [head, sep, ...lines.map((l) => `| ${l} |`)].join('\n')
}

let embedded: EmbeddedPostgres | undefined
const started = Date.now()
try {
  let url = args['database-url']
  if (!url) {
    embedded = await startEmbeddedPostgres()
    url = embedded.url
  }
  const db = new Database({ url, applicationName: 'warden-bench', connectTimeout: 10, statementTimeout: 60, poolMax: 1 })
  await migrate(db, 'warden')
  const version = (
    await db.rows<{ v: string }>({ name: 'bench.version', text: "SELECT current_setting('server_version') AS v", values: [] })
  )[0]!.v
  await db.close()
  const info = machine(version)
  process.stderr.write(`machine: ${JSON.stringify(info)}\n`)

  const rows: Row[] = []
  const plan: Array<{ concurrency: number; stream: boolean; patterns: Array<'release' | 'hold'> }> = [
    ...levels.map((concurrency) => ({ concurrency, stream: false, patterns: ['release', 'hold'] as Array<'release' | 'hold'> })),
    ...(streamLevel > 0 ? [{ concurrency: streamLevel, stream: true, patterns: ['release'] as Array<'release' | 'hold'> }] : []),
  ]
  for (const step of plan) {
    for (const pattern of step.patterns) {
      const loadBefore = loadavg()[0]!
      process.stderr.write(`${pattern}${step.stream ? ' stream' : ''} C=${step.concurrency}: ${durationMs / 1000} s measured...\n`)
      const [result] = await runLoadtest({
        patterns: [pattern],
        concurrency: step.concurrency,
        turns: Number(args.turns),
        durationMs,
        llmLatencyMs,
        stream: step.stream,
        poolMax,
        poolTimeoutMs: ms(args['pool-timeout']),
        databaseUrl: url,
        schema: 'warden',
        model: 'claude-mock-1',
        outputTokens: 16,
      })
      const verdict = targets(result!)
      rows.push({ ...result!, loadBefore, loadAfter: loadavg()[0]!, targetsMet: verdict.met, missed: verdict.missed })
      process.stderr.write(
        `  ${result!.throughput} turns/s (${(result!.littleLawRatio * 100).toFixed(1)} %), p99 ${result!.latencyMs.p99} ms, errors ${errs(result!.errors)}, rows ${result!.llmRequestsRows}/${result!.successes}, loop busy ${result!.serverEventLoopUtilization}, CPU ms/turn ${JSON.stringify(result!.cpuMsPerTurn)}\n`,
      )
    }
  }
  const report = {
    date: new Date().toISOString(),
    command: `node --import tsx bench/loadtest.ts ${process.argv.slice(2).join(' ')}`.trim(),
    machine: info,
    poolMax,
    llmLatencyMs,
    durationMs,
    wallSeconds: Math.round((Date.now() - started) / 1000),
    rows,
  }
  if (args.out) writeFileSync(args.out, JSON.stringify(report, null, 2))
  process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${markdown(rows)}\n\nwall time ${report.wallSeconds} s\n`)
} finally {
  await embedded?.stop()
}
