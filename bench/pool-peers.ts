/**
 * Warden's instrumented pool beside what users would pick instead, each in a child process of its
 * own (OpenTelemetry's instrumentation patches `pg` for the whole process): a bare pg.Pool, Warden
 * (instrumentPool, defaults), @opentelemetry/instrumentation-pg with the OpenTelemetry metrics SDK
 * (metrics only, and metrics with tracing), and @christiangalsterer/node-postgres-prometheus-exporter.
 * Every round runs every variant once per workload, in a rotating order; figures are medians over
 * rounds of each variant against the bare pool of the same round.
 *
 *   node --import tsx bench/pool-peers.ts [--database-url URL] [--rounds 7] [--workers 8] [--ops 4000] [--json]
 *
 * Workloads, `workers` concurrent loops on a pool of max `workers`:
 *   query     pool.query('SELECT 1')
 *   checkout  connect() → client.query('SELECT 1') → release()
 * Reported per variant: operations per second and CPU microseconds per operation of the child
 * (process.cpuUsage over the measured part only, after a warm-up), and the ratio of each to bare.
 * Without --database-url (or WARDEN_BENCH_DATABASE_URL) it starts an embedded PostgreSQL.
 */
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type PgModule from 'pg'
import { benchPostgres, describeMachine, machine } from './lib/postgres.js'
import { table, writeResults } from './lib/results.js'
import { median, round } from './lib/stats.js'

const VARIANTS = ['bare', 'warden', 'otel-metrics', 'otel-tracing', 'pg-prometheus-exporter'] as const
type Variant = (typeof VARIANTS)[number]
const WORKLOADS = ['query', 'checkout'] as const
type Workload = (typeof WORKLOADS)[number]

/** What each one lets an operator see (read from their docs and code, 2026-12-03). */
const PROVIDES: Record<Variant, string> = {
  bare: '–',
  warden:
    'connections by state, max, pending, wait time, use time, timeouts (OpenTelemetry names), connections held during LLM calls, long-hold warnings',
  'otel-metrics': 'connections by state, max, pending requests, operation duration (no wait or use time, no timeouts, no held-during-LLM)',
  'otel-tracing': 'the same, plus a span per query and per connect (batched to an in-memory exporter here)',
  'pg-prometheus-exporter': 'pool size, active connections, created / removed connections, errors (no pending, wait, use time or timeouts)',
}

const { values: args } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    rounds: { type: 'string', default: '7' },
    workers: { type: 'string', default: '8' },
    ops: { type: 'string', default: '4000' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
    workload: { type: 'string' },
    url: { type: 'string' },
  },
})
const workers = Number(args.workers)
const ops = Number(args.ops)

interface Measured {
  opsPerSecond: number
  cpuMicrosPerOp: number
}

/** In the child: set the variant up, warm up, then measure `ops` operations of the workload. */
async function child(variant: Variant, workload: Workload, url: string): Promise<Measured> {
  const require = createRequire(import.meta.url)
  let pg: typeof PgModule
  let instrument: (pool: PgModule.Pool) => void = () => undefined
  if (variant === 'otel-metrics' || variant === 'otel-tracing') {
    const { MeterProvider } = await import('@opentelemetry/sdk-metrics')
    const { PrometheusExporter } = await import('@opentelemetry/exporter-prometheus')
    const { PgInstrumentation } = await import('@opentelemetry/instrumentation-pg')
    const provider = new MeterProvider({ readers: [new PrometheusExporter({ preventServerStart: true })] })
    const instrumentation = new PgInstrumentation()
    instrumentation.setMeterProvider(provider)
    if (variant === 'otel-tracing') {
      const { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } = await import('@opentelemetry/sdk-trace-base')
      const exporter = new InMemorySpanExporter()
      instrumentation.setTracerProvider(new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] }))
      // what a real exporter would send is dropped, so memory stays flat over the run
      setInterval(() => exporter.reset(), 200).unref()
    }
    instrumentation.enable()
    // loaded after enable(): the instrumentation patches pg as it is required
    pg = require('pg') as typeof PgModule
  } else {
    pg = require('pg') as typeof PgModule
    if (variant === 'warden') {
      const { Registry } = await import('prom-client')
      const { instrumentPool } = await import('../src/pool/instrumented-pool.js')
      instrument = (pool) => void instrumentPool(pool, { poolName: 'bench', registry: new Registry() })
    } else if (variant === 'pg-prometheus-exporter') {
      const { Registry } = await import('prom-client')
      const { monitorPgPool } = await import('@christiangalsterer/node-postgres-prometheus-exporter')
      instrument = (pool) => monitorPgPool(pool, new Registry())
    }
  }
  const pool = new pg.Pool({ connectionString: url, max: workers })
  instrument(pool)
  const once =
    workload === 'query'
      ? () => pool.query('SELECT 1')
      : async () => {
          const client = await pool.connect()
          try {
            await client.query('SELECT 1')
          } finally {
            client.release()
          }
        }
  const run = async (count: number) => {
    let left = count
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (left-- > 0) await once()
      }),
    )
  }
  await run(Math.min(1000, ops)) // connections open, JIT warm
  const cpu = process.cpuUsage()
  const started = performance.now()
  await run(ops)
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  await pool.end()
  return { opsPerSecond: ops / seconds, cpuMicrosPerOp: (used.user + used.system) / ops }
}

async function main(): Promise<void> {
  const db = await benchPostgres(args['database-url'], { max_connections: '100' })
  const self = fileURLToPath(import.meta.url)
  const results = new Map<string, Measured[]>()
  const ratios = new Map<string, { ops: number[]; cpu: number[] }>()
  try {
    const rounds = Number(args.rounds)
    for (let r = 0; r < rounds; r += 1) {
      for (const workload of WORKLOADS) {
        const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length]!)
        const thisRound = new Map<Variant, Measured>()
        for (const variant of order) {
          const out = execFileSync(
            process.execPath,
            [
              '--import',
              'tsx',
              self,
              '--child',
              variant,
              '--workload',
              workload,
              '--url',
              db.adminUrl,
              '--workers',
              String(workers),
              '--ops',
              String(ops),
            ],
            { encoding: 'utf8' },
          )
          const measured = JSON.parse(out.trim().split('\n').at(-1)!) as Measured
          thisRound.set(variant, measured)
          const key = `${variant} ${workload}`
          results.set(key, [...(results.get(key) ?? []), measured])
        }
        const bare = thisRound.get('bare')!
        for (const [variant, m] of thisRound) {
          const key = `${variant} ${workload}`
          const entry = ratios.get(key) ?? { ops: [], cpu: [] }
          entry.ops.push(m.opsPerSecond / bare.opsPerSecond)
          entry.cpu.push(m.cpuMicrosPerOp / bare.cpuMicrosPerOp)
          ratios.set(key, entry)
        }
      }
      if (!args.json) process.stderr.write(`round ${r + 1}/${rounds} done\n`)
    }
    const rows = WORKLOADS.flatMap((workload) =>
      VARIANTS.map((variant) => {
        const key = `${variant} ${workload}`
        const measured = results.get(key)!
        const ratio = ratios.get(key)!
        return {
          workload,
          variant,
          opsPerSecond: round(median(measured.map((m) => m.opsPerSecond)), 0),
          cpuMicrosPerOp: round(median(measured.map((m) => m.cpuMicrosPerOp)), 1),
          opsVsBare: round(median(ratio.ops), 3),
          cpuVsBare: round(median(ratio.cpu), 3),
          provides: PROVIDES[variant],
        }
      }),
    )
    const m = machine(db)
    const report = { date: new Date().toISOString(), machine: m, rounds, workers, ops, rows }
    const file = writeResults('pool-peers', report)
    if (args.json) {
      console.log(JSON.stringify(report, null, 2))
      return
    }
    console.log(describeMachine(m))
    console.log(`${rounds} rounds; each variant in its own child process; ${workers} workers, ${ops} operations per measurement`)
    console.log(
      table(
        ['workload', 'variant', 'ops/s', 'CPU µs/op', 'ops/s vs bare', 'CPU/op vs bare'],
        rows.map((row) => [row.workload, row.variant, row.opsPerSecond, row.cpuMicrosPerOp, row.opsVsBare, row.cpuVsBare]),
        2,
      ),
    )
    console.log()
    console.log(
      table(
        ['variant', 'what it measures'],
        VARIANTS.map((variant) => [variant, PROVIDES[variant]]),
        2,
      ),
    )
    console.log(`results: ${file}`)
  } finally {
    await db.stop()
  }
}

if (args.child) {
  const measured = await child(args.child as Variant, args.workload as Workload, args.url!)
  console.log(JSON.stringify(measured))
} else {
  await main()
}
