/**
 * Overhead of the instrumented pool (src/pool) against a bare pg.Pool, in one process, on one
 * database, at the same concurrency. Rounds alternate the pools (rotating which goes first) and
 * every figure is a median over rounds, against the bare pool of the same round.
 *
 *   node --import tsx bench/pool.ts [--database-url URL] [--rounds 30] [--workers 8]
 *        [--queries 500] [--acquires 5000] [--workloads query,checkout,acquire] [--tax-pairs 8]
 *        [--scoped] [--json]
 *
 * Without --database-url (or WARDEN_BENCH_DATABASE_URL) it starts an embedded PostgreSQL.
 *
 * Workloads, each run by `workers` concurrent loops on a pool of max `workers`:
 *   query     pool.query('SELECT 1')
 *   checkout  connect() → client.query('SELECT 1') → release()
 *   acquire   connect() → release() of an idle client, no statement: the instrumentation's own
 *             cost with no round trip to hide it (the worst case; read it in µs, not in %)
 *
 * The held-connection detector keeps its operations in an AsyncLocalStorage, which is only turned
 * on once a scope exists (an incoming HTTP request, a poolScope). By default the loops run outside
 * any scope, as a script would; --scoped runs every loop in its own poolScope, as a server's
 * requests do: AsyncLocalStorage is then on for the whole process (Node 20's promise hooks), so
 * the bare pool of the same process pays that part too and the ratios show Warden's own cost.
 * The "process-wide AsyncLocalStorage cost" section measures that part apart: child processes
 * running the bare pool alone, alternately with and without an AsyncLocalStorage in use.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { execFileSync } from 'node:child_process'
import { availableParallelism, cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { Registry } from 'prom-client'
import { instrumentPool, poolScope, type PoolLogger } from '../src/pool/instrumented-pool.js'

type Workload = 'query' | 'checkout' | 'acquire'
const WORKLOADS_ALL: Workload[] = ['query', 'checkout', 'acquire']

const { values: args } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    rounds: { type: 'string', default: '30' },
    workers: { type: 'string', default: '8' },
    queries: { type: 'string', default: '500' },
    acquires: { type: 'string', default: '5000' },
    /** comma-separated subset, e.g. for a profile: --workloads acquire */
    workloads: { type: 'string', default: WORKLOADS_ALL.join(',') },
    /** child processes per side for the process-wide AsyncLocalStorage cost; 0 skips it */
    'tax-pairs': { type: 'string', default: '8' },
    /** every worker loop in its own poolScope (AsyncLocalStorage on), as in a server */
    scoped: { type: 'boolean', default: false },
    /** internal: run the bare pool only, with (als) or without (plain) AsyncLocalStorage */
    child: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})
const WORKLOADS = args.workloads.split(',').map((w) => w.trim()) as Workload[]
for (const workload of WORKLOADS)
  if (!WORKLOADS_ALL.includes(workload)) throw new Error(`unknown workload ${workload}; one of ${WORKLOADS_ALL.join(', ')}`)
const rounds = Number(args.rounds)
const workers = Number(args.workers)
const taxPairs = Number(args['tax-pairs'])
const perWorker: Record<Workload, number> = { query: Number(args.queries), checkout: Number(args.queries), acquire: Number(args.acquires) }

interface Run {
  ops: number
  ms: number
  cpuUs: number
}

async function runWorkload(pool: pg.Pool, workload: Workload, each: number): Promise<Run> {
  const work = async () => {
    for (let i = 0; i < each; i += 1) {
      if (workload === 'query') {
        await pool.query('SELECT 1')
      } else {
        const client = await pool.connect()
        if (workload === 'checkout') await client.query('SELECT 1')
        client.release()
      }
    }
  }
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(Array.from({ length: workers }, () => (args.scoped ? poolScope(work) : work())))
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)
  return { ops: workers * each, ms, cpuUs: used.user + used.system }
}

/** Quantile with linear interpolation (q = 0.5: the median). */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * q
  const low = Math.floor(at)
  const high = Math.ceil(at)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low)
}

const median = (values: number[]) => quantile(values, 0.5)

const throughput = (run: Run) => (run.ops / run.ms) * 1000

/** Medians over rounds of one pool against the bare pool of the same rounds. */
function compare(pool: string, runs: Run[], bare: Run[]) {
  const ratios = runs.map((run, i) => throughput(run) / throughput(bare[i]!))
  const ratio = median(ratios)
  return {
    pool,
    throughput: Math.round(median(runs.map(throughput))),
    ratio: Number(ratio.toFixed(4)),
    /** spread of the per-round ratios: how noisy the machine was */
    ratioIqr: [Number(quantile(ratios, 0.25).toFixed(3)), Number(quantile(ratios, 0.75).toFixed(3))],
    lossPercent: Number(((1 - ratio) * 100).toFixed(2)),
    wallOverheadUsPerOp: Number(median(runs.map((run, i) => ((run.ms - bare[i]!.ms) * 1000) / run.ops)).toFixed(2)),
    cpuUsPerOp: Number(median(runs.map((run) => run.cpuUs / run.ops)).toFixed(2)),
    cpuOverheadUsPerOp: Number(median(runs.map((run, i) => run.cpuUs / run.ops - bare[i]!.cpuUs / bare[i]!.ops)).toFixed(2)),
  }
}

const silent: PoolLogger = { warn: () => undefined }

/** Child mode: the bare pool alone, warm-up then one run per workload, as JSON on stdout. */
async function child(url: string, withAls: boolean): Promise<void> {
  if (withAls) new AsyncLocalStorage<object>().enterWith({}) // what the detector's first connect() does
  const pool = new pg.Pool({ connectionString: url, max: workers, application_name: 'warden-bench-pool' })
  pool.on('error', () => undefined)
  const runs: Partial<Record<Workload, Run>> = {}
  for (const workload of WORKLOADS) await runWorkload(pool, workload, Math.ceil(perWorker[workload] / 3))
  for (const workload of WORKLOADS) runs[workload] = await runWorkload(pool, workload, perWorker[workload])
  await pool.end()
  process.stdout.write(JSON.stringify(runs))
}

function alsTax(url: string) {
  const runs: Record<'plain' | 'als', Array<Partial<Record<Workload, Run>>>> = { plain: [], als: [] }
  const script = fileURLToPath(import.meta.url)
  for (let pair = 0; pair < taxPairs; pair += 1) {
    for (const mode of pair % 2 === 0 ? (['plain', 'als'] as const) : (['als', 'plain'] as const)) {
      const out = execFileSync(
        process.execPath,
        [
          ...process.execArgv,
          script,
          '--child',
          mode,
          '--database-url',
          url,
          '--workers',
          String(workers),
          '--queries',
          String(perWorker.query),
          '--acquires',
          String(perWorker.acquire),
          '--workloads',
          WORKLOADS.join(','),
        ],
        { encoding: 'utf8' },
      )
      runs[mode].push(JSON.parse(out) as Partial<Record<Workload, Run>>)
    }
    if (!args.json) process.stderr.write(`AsyncLocalStorage cost: pair ${pair + 1}/${taxPairs} done\n`)
  }
  return WORKLOADS.map((workload) => {
    const plain = runs.plain.map((r) => r[workload]!)
    const als = runs.als.map((r) => r[workload]!)
    return { workload, ...compare('bare pool, AsyncLocalStorage in use', als, plain) }
  })
}

async function main(): Promise<void> {
  let url = args['database-url'] ?? process.env.WARDEN_BENCH_DATABASE_URL
  if (args.child !== undefined) return child(url!, args.child === 'als')
  let stop: (() => Promise<unknown>) | undefined
  if (!url) {
    const { startEmbeddedPostgres } = await import('../src/embedded/embedded-postgres.js')
    const server = await startEmbeddedPostgres()
    url = server.url
    stop = server.stop
  }
  const onSignal = () => void (stop?.() ?? Promise.resolve()).finally(() => process.exit(130))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const config: pg.PoolConfig = { connectionString: url, max: workers, application_name: 'warden-bench-pool' }
  const registry = new Registry()
  const pools: Record<string, pg.Pool> = {
    bare: new pg.Pool(config),
    'instrumented (defaults)': instrumentPool(new pg.Pool(config), { poolName: 'bench', registry, logger: silent }),
    'instrumented, captureStacks: true': instrumentPool(new pg.Pool(config), {
      poolName: 'bench_stacks',
      registry,
      logger: silent,
      captureStacks: true,
    }),
    'instrumented, detector off': instrumentPool(new pg.Pool(config), {
      poolName: 'bench_metrics',
      registry,
      logger: silent,
      detectHeldDuringLlmCall: false,
      longHoldMs: 0,
    }),
  }
  const names = Object.keys(pools)
  try {
    for (const pool of Object.values(pools)) pool.on('error', () => undefined) // idle clients closed at the end
    const { rows } = await pools.bare!.query<{ server_version: string }>('SHOW server_version')
    const machine = {
      nproc: availableParallelism(),
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      cpu: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      postgres: rows[0]!.server_version,
      database: stop ? 'embedded' : 'external',
    }
    // warm-up: open every connection, let the JIT settle
    for (const name of names)
      for (const workload of WORKLOADS) await runWorkload(pools[name]!, workload, Math.ceil(perWorker[workload] / 3))

    const results: Record<Workload, Record<string, Run[]>> = { query: {}, checkout: {}, acquire: {} }
    for (let round = 0; round < rounds; round += 1) {
      const order = names.map((_, i) => names[(i + round) % names.length]!) // rotate who goes first
      for (const workload of WORKLOADS) {
        for (const name of order) (results[workload][name] ??= []).push(await runWorkload(pools[name]!, workload, perWorker[workload]))
      }
      if (!args.json) process.stderr.write(`round ${round + 1}/${rounds} done\n`)
    }
    const report = WORKLOADS.map((workload) => ({
      workload,
      opsPerRound: workers * perWorker[workload],
      pools: names.map((name) => compare(name, results[workload][name]!, results[workload].bare!)),
    }))
    const tax = taxPairs > 0 ? alsTax(url) : []

    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({ machine, rounds, workers, scoped: args.scoped, report, asyncLocalStorageCost: tax }, null, 2)}\n`,
      )
      return
    }
    console.log(
      `machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memoryGiB} GiB; Node ${machine.node}; PostgreSQL ${machine.postgres} (${machine.database})`,
    )
    console.log(
      `${rounds} rounds, ${workers} workers, pools of max ${workers}; medians over rounds, against the bare pool of the same round\n`,
    )
    console.log(
      '| workload | ops/round | pool | ops/s | ratio | ratio p25–p75 | loss % | wall µs/op over bare | CPU µs/op | CPU µs/op over bare |',
    )
    console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|')
    for (const { workload, opsPerRound, pools: rowsOfWorkload } of report) {
      for (const row of rowsOfWorkload) {
        console.log(
          `| ${workload} | ${opsPerRound} | ${row.pool} | ${row.throughput} | ${row.ratio.toFixed(3)} | ${row.ratioIqr[0]!.toFixed(2)}–${row.ratioIqr[1]!.toFixed(2)} | ${row.lossPercent.toFixed(1)} | ${row.wallOverheadUsPerOp.toFixed(1)} | ${row.cpuUsPerOp.toFixed(1)} | ${row.cpuOverheadUsPerOp.toFixed(1)} |`,
        )
      }
    }
    if (tax.length > 0) {
      console.log(`\nprocess-wide AsyncLocalStorage cost (bare pool, ${taxPairs} child processes each way, alternated):\n`)
      console.log('| workload | ops/s with ALS | ratio | ratio p25–p75 | loss % | CPU µs/op over no ALS |')
      console.log('|---|---:|---:|---:|---:|---:|')
      for (const row of tax)
        console.log(
          `| ${row.workload} | ${row.throughput} | ${row.ratio.toFixed(3)} | ${row.ratioIqr[0]!.toFixed(2)}–${row.ratioIqr[1]!.toFixed(2)} | ${row.lossPercent.toFixed(1)} | ${row.cpuOverheadUsPerOp.toFixed(1)} |`,
        )
    }
  } finally {
    await Promise.all(Object.values(pools).map((pool) => pool.end()))
    await stop?.()
  }
}

await main()
