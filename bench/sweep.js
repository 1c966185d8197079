#!/usr/bin/env node
// bench/sweep — one big UPDATE (the post-mortem's fix) against `warden sessions sweep --apply`.
//
// Builds identical session tables (default 2,000,000 sessions, 1,000,000 of them orphaned) and, in
// the same run, measures
//   (a) the single UPDATE of the post-mortem, on one copy, and
//   (b) the real CLI, `warden sessions sweep --apply --json`, as a subprocess, on another copy,
// each while writer clients keep touching sessions (last_activity_at = now(), one short
// transaction per write) so the latency a live application sees is recorded too.
//
// Plain ESM JavaScript on purpose: `npm run bench:sweep` (= npm run build && node bench/sweep.js)
// runs it as is. It reads the compiled CLI from dist/, never src/. Usage: node bench/sweep.js --help
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const ORPHAN_AFTER = '2 hours' // the data below is built around the default orphanAfter (2h)
const TABLE_PREFIX = 'bench_sweep_'
const WRITER_APP = 'warden-bench-writer'
const MONITOR_APP = 'warden-bench-monitor'
const UPDATE_APP = 'warden-bench-single-update'
const CLI_APP = 'warden' // the CLI's default database.applicationName
/** issue #15: the sweep's rows/s by the CLI process's wall time (Node start-up included) over the single UPDATE's */
const GOAL_RATIO = 0.9
/** issue #15: the bigger table's rate over the smaller one's (linear) */
const GOAL_SCALE = 0.9

const HELP = `bench/sweep: single UPDATE vs \`warden sessions sweep --apply\` on identical tables

usage: node bench/sweep.js [options]        (npm run bench:sweep builds dist/ first)

  --rows N              sessions per table (default 2000000)
  --orphans N           orphaned sessions: open and silent > 2h (default 1000000)
  --live N              open, recently active sessions the writers touch (default min(100000, (rows-orphans)/2))
  --batch-size N        the sweep's --batch-size (default: not passed: adaptive batches, the CLI's default)
  --batch-sizes A,B,C   measure the sweep once per batch size in every round; "adaptive" is the CLI
                        without --batch-size (e.g. adaptive,10000,20000)
  --scale R1,R2         run everything once per table size, in this invocation, and compare the
                        rates (e.g. 2000000,6000000); orphans keep the --orphans/--rows share, live
                        sessions the --live rule; needs the disk for (runs + 1) copies of the biggest
  --repeat N            rounds; every round rebuilds all tables and alternates the order (default 3)
  --writers N           clients touching random live (non-orphaned) sessions (default 3)
  --orphan-writers N    clients touching random orphans, i.e. rows the sweep wants (default 1)
  --write-rate N        writes per second per writer client (default 50)
  --baseline-seconds N  writers alone on an idle table first, for reference (default 5; 0 = skip)
  --explain             also EXPLAIN (ANALYZE, BUFFERS) the CLI's batch statement on a spare copy
  --database-url URL    use this server instead of an embedded one (or WARDEN_BENCH_DATABASE_URL);
                        creates ${TABLE_PREFIX}* tables (dropped at the end) and runs \`warden db migrate\`
  --cli-root DIR        a Warden tree (bin/run.js, package.json, dist/) to run instead of this repo's
  --no-snapshot         run this repo's dist/ in place (default: copy it to a temp dir first, so a
                        concurrent \`npm run build\`, which deletes dist/, cannot break a long run)
  --out DIR             where to write the JSON results (default bench/results)
  -h, --help`

// ---------------------------------------------------------------------------------------------
// options

function usage(message) {
  return Object.assign(new Error(message), { usage: true })
}

function parseOptions(argv) {
  let values
  try {
    values = parseOptions0(argv)
  } catch (error) {
    throw error.usage ? error : usage(error.message)
  }
  return values
}

function parseOptions0(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string', default: '2000000' },
      orphans: { type: 'string', default: '1000000' },
      live: { type: 'string' },
      'batch-size': { type: 'string' },
      'batch-sizes': { type: 'string' },
      scale: { type: 'string' },
      repeat: { type: 'string', default: '3' },
      writers: { type: 'string', default: '3' },
      'orphan-writers': { type: 'string', default: '1' },
      'write-rate': { type: 'string', default: '50' },
      'baseline-seconds': { type: 'string', default: '5' },
      explain: { type: 'boolean', default: false },
      'database-url': { type: 'string' },
      'cli-root': { type: 'string' },
      'no-snapshot': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log(HELP)
    process.exit(0)
  }
  const int = (name, min, value = values[name]) => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min) throw usage(`--${name} expects an integer >= ${min}, got ${JSON.stringify(value)}`)
    return n
  }
  const rows = int('rows', 1)
  const orphans = int('orphans', 0)
  const live = values.live === undefined ? Math.max(0, Math.min(100_000, Math.floor((rows - orphans) / 2))) : int('live', 0)
  if (orphans + live > rows) throw usage(`--orphans (${orphans}) + --live (${live}) exceed --rows (${rows})`)
  const sizeOf = (name, value) => (value.trim() === 'adaptive' ? null : int(name, 1, value.trim()))
  let batchSizes
  if (values['batch-sizes'] !== undefined) {
    batchSizes = values['batch-sizes'].split(',').map((s) => sizeOf('batch-sizes', s))
  } else {
    batchSizes = [values['batch-size'] === undefined ? null : sizeOf('batch-size', values['batch-size'])]
  }
  const liveFor = (n, o) => (values.live === undefined ? Math.max(0, Math.min(100_000, Math.floor((n - o) / 2))) : live)
  const scales = (values.scale === undefined ? [String(rows)] : values.scale.split(',')).map((value) => {
    const n = int('scale', 1, value.trim())
    const o = Math.round((n * orphans) / rows)
    if (o + liveFor(n, o) > n) throw usage(`--scale ${n}: orphans (${o}) + live (${liveFor(n, o)}) exceed the rows`)
    return { rows: n, orphans: o, live: liveFor(n, o) }
  })
  const writers = live > 0 ? int('writers', 0) : 0
  return {
    rows,
    orphans,
    live,
    batchSizes, // null = let the CLI use its default (adaptive)
    scales,
    repeat: int('repeat', 1),
    writers,
    orphanWriters: orphans > 0 ? int('orphan-writers', 0) : 0,
    writeRate: int('write-rate', 1),
    baselineSeconds: int('baseline-seconds', 0),
    explain: values.explain,
    databaseUrl: values['database-url'] ?? (process.env.WARDEN_BENCH_DATABASE_URL || undefined),
    cliRoot: values['cli-root'] ? resolve(values['cli-root']) : undefined,
    snapshot: !values['no-snapshot'],
    outDir: resolve(values.out ?? join(REPO, 'bench', 'results')),
  }
}

// ---------------------------------------------------------------------------------------------
// small helpers

const log = (message) => process.stderr.write(`[bench] ${message}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const round = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? null : Number(n.toFixed(digits)))
const fmtInt = (n) => (n === null || n === undefined ? '-' : Math.round(n).toLocaleString('en-US'))
const fmtNum = (n, digits = 1) => (n === null || n === undefined ? '-' : n.toFixed(digits))

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b)
  if (!v.length) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** nearest-rank percentile */
function percentile(sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** the same uuid as md5('warden-bench:' || i)::uuid in SQL */
function sessionUuid(i) {
  const h = createHash('md5').update(`warden-bench:${i}`).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

function sha256(path) {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16)
  } catch {
    return null
  }
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

function machineInfo() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : ''
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown'
  return {
    nproc: Number(sh('nproc', [])) || cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    cpuModel: model,
    node: process.version,
  }
}

// ---------------------------------------------------------------------------------------------
// server CPU accounting (only when the server runs on this host: the embedded one)

const CLK_TCK = Number(sh('getconf', ['CLK_TCK'])) || 100

function readStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { ppid: Number(f[1]), self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) }
  } catch {
    return null
  }
}

/**
 * CPU seconds the whole server has used so far: postmaster, its live children (backends,
 * checkpointer, walwriter, parallel workers…) and, through cutime/cstime, children already reaped.
 * The bench's own helper backends (writers, monitor) are reported apart so they can be subtracted.
 */
function serverCpu(postmasterPid, helperPids) {
  const pm = readStat(postmasterPid)
  if (!pm) return null
  let total = pm.self + pm.children
  let helpers = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const st = readStat(Number(entry))
    if (!st || st.ppid !== postmasterPid) continue
    total += st.self
    if (helperPids.has(Number(entry))) helpers += st.self
  }
  return { total: total / CLK_TCK, helpers: helpers / CLK_TCK }
}

// ---------------------------------------------------------------------------------------------
// data: deterministic, generated by the server

/**
 * Row i (1..rows), in session_start order (the heap's physical order):
 *   i <= H = rows - live:  historical sessions, session_start spread over the 30 days before
 *                          now() - 3h; `orphans` of them, evenly interleaved, are still open and
 *                          silent for > 2h15m (10 % with last_activity_at NULL, so COALESCE
 *                          falls back to session_start); the rest are closed.
 *   i >  H:                live sessions, open, last activity within the last 20 minutes.
 * Ids are md5('warden-bench:' || i)::uuid: random order with respect to the heap, as uuid v4 is.
 */
function insertRowsSql(table, { rows, orphans, live }) {
  const H = rows - live
  return `INSERT INTO ${table}
  SELECT md5('warden-bench:' || i)::uuid,
         'user-' || (h % 50000),
         CASE WHEN h % 50 = 0 THEN NULL ELSE (ARRAY['support', 'sales', 'coder', 'triage'])[1 + (h >> 8) % 4] END,
         is_active, st, la,
         CASE WHEN is_active THEN NULL ELSE COALESCE(la, st) END,
         CASE WHEN is_active THEN NULL ELSE COALESCE(la, st) END,
         CASE WHEN is_active THEN NULL ELSE GREATEST(EXTRACT(EPOCH FROM COALESCE(la, st) - st), 0)::int END
    FROM (SELECT i, h, live OR orphan AS is_active, st,
                 CASE WHEN live THEN now() - make_interval(secs => (h >> 4) % 1200)
                      WHEN orphan AND (h >> 16) % 10 = 0 THEN NULL
                      ELSE st + make_interval(secs => (h >> 4) % 2700) END AS la
            FROM (SELECT i, h, live, orphan,
                         CASE WHEN live THEN now() - make_interval(secs => 1200 + (h >> 4) % 3600)
                              ELSE now() - interval '3 hours' - make_interval(secs => (${H} - i)::float8 / ${Math.max(H, 1)} * 30 * 86400) END AS st
                    FROM (SELECT i, abs(hashint4(i)) AS h, i > ${H} AS live,
                                 i <= ${H} AND (i::int8 * ${orphans} / ${Math.max(H, 1)}) > ((i - 1)::int8 * ${orphans} / ${Math.max(H, 1)}) AS orphan
                            FROM generate_series($1::int, $2::int) AS i) AS s1) AS s2) AS s3`
}

/** The ids the writers touch, computed like the SQL above. */
function sessionIndexes({ rows, orphans, live }) {
  const H = rows - live
  const liveIdx = []
  for (let i = H + 1; i <= rows; i++) liveIdx.push(i)
  const orphanIdx = []
  for (let i = 1; i <= H; i++) if (Math.floor((i * orphans) / H) > Math.floor(((i - 1) * orphans) / H)) orphanIdx.push(i)
  // the orphan writer picks at random: beyond a million, an even sample keeps the uuids' memory bounded
  const stride = Math.ceil(orphanIdx.length / 1_000_000)
  return { liveIdx, orphanIdx: stride > 1 ? orphanIdx.filter((_, k) => k % stride === 0) : orphanIdx }
}

// schema.sql of examples/conversation_sessions, under another name; autovacuum off so it cannot
// run on one copy while the other is measured (both copies are VACUUM (FREEZE, ANALYZE)d up front).
const createTableSql = (table) => `CREATE TABLE ${table} (
  session_id        uuid NOT NULL,
  user_id           text NOT NULL,
  agent_role        text,
  is_active         boolean NOT NULL DEFAULT true,
  session_start     timestamptz NOT NULL DEFAULT now(),
  last_activity_at  timestamptz,
  session_end       timestamptz,
  ended_at          timestamptz,
  duration_seconds  integer
) WITH (autovacuum_enabled = false)`

const indexSql = (table) => [
  `ALTER TABLE ${table} ADD CONSTRAINT ${table}_pkey PRIMARY KEY (session_id)`,
  `CREATE INDEX ${table}_open_silence_idx ON ${table} ((COALESCE(last_activity_at, session_start))) WHERE is_active`,
]

/** the post-mortem's statement, with the same assignments the sweep makes */
const singleUpdateSql = (table) => `UPDATE ${table}
   SET is_active = false, session_end = now(), ended_at = now(),
       duration_seconds = GREATEST(EXTRACT(EPOCH FROM (now() - session_start)), 0)
 WHERE is_active AND COALESCE(last_activity_at, session_start) < now() - interval '${ORPHAN_AFTER}'`

async function buildTables(client, names, shape) {
  const [first, ...copies] = names
  const started = performance.now()
  const chunk = 250_000
  for (const name of names) {
    await client.query(`DROP TABLE IF EXISTS ${name}`)
    await client.query(createTableSql(name))
  }
  for (let lo = 1; lo <= shape.rows; lo += chunk) {
    const hi = Math.min(shape.rows, lo + chunk - 1)
    await client.query(insertRowsSql(first, shape), [lo, hi])
    log(`  generating ${first}: ${fmtInt(hi)}/${fmtInt(shape.rows)} rows (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  }
  for (const name of copies) {
    // physical copy in the same order: identical heaps
    await client.query(`INSERT INTO ${name} SELECT * FROM ${first} ORDER BY ctid`)
    log(`  copied ${first} -> ${name} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  }
  for (const name of names) {
    for (const statement of indexSql(name)) await client.query(statement)
    await client.query(`VACUUM (FREEZE, ANALYZE) ${name}`)
    log(`  indexed + VACUUM (FREEZE, ANALYZE) ${name} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  }
  const {
    rows: [check],
  } = await client.query(
    `SELECT count(*)::int AS total,
            (count(*) FILTER (WHERE is_active AND COALESCE(last_activity_at, session_start) < now() - interval '${ORPHAN_AFTER}'))::int AS orphans,
            (count(*) FILTER (WHERE is_active))::int AS open,
            pg_total_relation_size('${first}')::int8 AS bytes,
            pg_database_size(current_database())::int8 AS "databaseBytes"
       FROM ${first}`,
  )
  if (check.total !== shape.rows || check.orphans !== shape.orphans || check.open !== shape.orphans + shape.live) {
    throw new Error(`generated data is off: ${JSON.stringify(check)} for ${JSON.stringify(shape)}`)
  }
  return {
    seconds: (performance.now() - started) / 1000,
    tableMiB: round(Number(check.bytes) / 2 ** 20, 0),
    // every copy of the round at once: what the disk must hold (WAL and the server's temp files come on top)
    databaseMiB: round(Number(check.databaseBytes) / 2 ** 20, 0),
  }
}

// ---------------------------------------------------------------------------------------------
// writers: each its own connection, paced, one short autocommit UPDATE per write

/** writer groups still running, so an interrupted run can stop them before the server */
const activeWriters = new Set()

async function startWriters(url, table, ids, count, kind, ratePerSecond, writes) {
  const clients = []
  for (let w = 0; w < count; w++) {
    const client = new pg.Client({ connectionString: url, application_name: `${WRITER_APP}-${kind}` })
    client.on('error', () => undefined) // a server shutting down (SIGINT) must not crash the bench
    await client.connect()
    client.benchPid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    clients.push(client)
  }
  let stop = false
  const interval = 1000 / ratePerSecond
  const text = `UPDATE ${table} SET last_activity_at = now() WHERE session_id = $1`
  // a small deterministic generator per writer (mulberry32), so runs touch the same sessions
  const rng = (seed) => () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const loops = clients.map(async (client, w) => {
    const next = rng(7919 * (w + 1) + (kind === 'orphan' ? 104729 : 0))
    let due = performance.now()
    while (!stop) {
      const id = ids[Math.floor(next() * ids.length)]
      const start = performance.now()
      try {
        await client.query(text, [id])
        writes.push({ kind, start, ms: performance.now() - start })
      } catch (error) {
        writes.push({ kind, start, ms: performance.now() - start, error: error.message })
      }
      due += interval
      const now = performance.now()
      if (due < now)
        due = now // behind schedule (e.g. blocked): no catch-up burst
      else await sleep(due - now)
    }
  })
  const handle = {
    pids: clients.map((c) => c.benchPid),
    async stop() {
      stop = true
      activeWriters.delete(handle)
      await Promise.all(loops)
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
    },
  }
  activeWriters.add(handle)
  return handle
}

function latencyStats(writes, kind, from, to) {
  const selected = writes.filter((w) => w.kind === kind && w.start >= from && w.start <= to)
  const ms = selected
    .filter((w) => !w.error)
    .map((w) => w.ms)
    .sort((a, b) => a - b)
  return {
    n: selected.length,
    errors: selected.length - ms.length,
    p50: round(percentile(ms, 50), 1),
    p99: round(percentile(ms, 99), 1),
    max: round(ms.length ? ms[ms.length - 1] : null, 1),
  }
}

/**
 * Where the sweep's time goes, from the server's own log: the CLI's connections are opened with
 * log_min_duration_statement = 0 (embedded server only, whose log the bench reads), and every
 * parse/bind/execute duration is added to the class of its statement.
 */
function statementBreakdown(logText) {
  const out = { batchMs: 0, countMs: 0, sampleMs: 0, otherMs: 0, batchExecutions: 0, maxBatchExecMs: 0 }
  const re = /LOG:\s+duration: ([\d.]+) ms\s+(parse|bind|execute|statement)[^:]*:\s*(.*)$/gm
  let m
  while ((m = re.exec(logText))) {
    const ms = Number(m[1])
    const first = m[3]
    if (/^WITH batch AS/.test(first)) {
      out.batchMs += ms
      if (m[2] === 'execute' || m[2] === 'statement') {
        out.batchExecutions += 1
        out.maxBatchExecMs = Math.max(out.maxBatchExecMs, ms)
      }
    } else if (/AS "group",?\s*$/.test(first)) out.countMs += ms
    else if (/::text AS id,?\s*$/.test(first)) out.sampleMs += ms
    else out.otherMs += ms
  }
  for (const k of Object.keys(out)) out[k] = round(out[k], k === 'batchExecutions' ? 0 : 1)
  return out
}

// ---------------------------------------------------------------------------------------------
// monitor: samples pg_stat_activity every 50 ms for the longest open transaction per role and the
// number of writers waiting on a lock

async function startMonitor(url) {
  const client = new pg.Client({ connectionString: url, application_name: MONITOR_APP })
  client.on('error', () => undefined)
  await client.connect()
  const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
  let stop = false
  const state = { maxXactMs: {}, maxWritersWaiting: 0 }
  const loop = (async () => {
    while (!stop) {
      try {
        const { rows } = await client.query(
          `SELECT application_name AS app,
                  max(EXTRACT(EPOCH FROM clock_timestamp() - xact_start) * 1000) FILTER (WHERE state <> 'idle')::float8 AS xact_ms,
                  count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiting
             FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            GROUP BY 1`,
        )
        let waiting = 0
        for (const row of rows) {
          const app = row.app.startsWith(WRITER_APP) ? WRITER_APP : row.app
          if (row.xact_ms !== null) state.maxXactMs[app] = Math.max(state.maxXactMs[app] ?? 0, row.xact_ms)
          if (row.app.startsWith(WRITER_APP)) waiting += row.waiting
        }
        state.maxWritersWaiting = Math.max(state.maxWritersWaiting, waiting)
      } catch {
        // a sample lost is not a result lost
      }
      await sleep(50)
    }
  })()
  return {
    pid,
    reset() {
      state.maxXactMs = {}
      state.maxWritersWaiting = 0
    },
    snapshot: () => ({ maxXactMs: { ...state.maxXactMs }, maxWritersWaiting: state.maxWritersWaiting }),
    async stop() {
      stop = true
      await loop
      await client.end().catch(() => undefined)
    },
  }
}

// ---------------------------------------------------------------------------------------------
// the CLI

/** A private copy of the built CLI, so a concurrent `npm run build` (rm -rf dist) cannot break the run. */
function prepareCliRoot(options) {
  if (options.cliRoot) return { root: options.cliRoot, cleanup: () => undefined }
  const required = ['dist/commands/sessions/sweep.js', 'dist/commands/db/migrate.js', 'dist/embedded/embedded-postgres.js']
  const missing = required.filter((p) => !existsSync(join(REPO, p)))
  if (missing.length) throw new Error(`${missing.join(', ')} missing: run \`npm run build\` first (or npm run bench:sweep)`)
  if (!options.snapshot) return { root: REPO, cleanup: () => undefined }
  const root = mkdtempSync(join(tmpdir(), `warden-bench-cli-${process.pid}-`))
  cpSync(join(REPO, 'dist'), join(root, 'dist'), { recursive: true })
  mkdirSync(join(root, 'bin'))
  cpSync(join(REPO, 'bin', 'run.js'), join(root, 'bin', 'run.js'))
  cpSync(join(REPO, 'package.json'), join(root, 'package.json'))
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'))
  for (const p of required)
    if (!existsSync(join(root, p))) throw new Error(`snapshot of dist/ is incomplete (${p}); was a build running? try again`)
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) }
}

/** The CLI's own connections log every statement with its duration (libpq-style options in the URL). */
function withStatementLogging(url) {
  const parsed = new URL(url)
  parsed.searchParams.set('options', '-c log_min_duration_statement=0')
  return parsed.toString()
}

let currentChild = null

/** Runs the CLI with a clean environment (no WARDEN_* / DATABASE_URL leaking in) in an empty dir. */
function runCli(cliRoot, cwd, args) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARDEN_') && k !== 'DATABASE_URL'))
  return new Promise((resolvePromise, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, [join(cliRoot, 'bin', 'run.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    currentChild = child
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      currentChild = null
      const wallMs = performance.now() - started
      if (code !== 0)
        return reject(new Error(`warden ${args.slice(0, 2).join(' ')} exited ${code ?? signal}: ${stderr.trim() || stdout.trim()}`))
      resolvePromise({ stdout, stderr, wallMs })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// one measurement

async function measure({ kind, table, batchSize, ctx }) {
  const { admin, monitor } = ctx
  await admin.query('CHECKPOINT') // the same dirty-buffer state before each measurement
  const writes = []
  const helperPids = new Set([monitor.pid])
  const writers = []
  try {
    return await measureWithWriters({ kind, table, batchSize, ctx, writes, helperPids, writers })
  } finally {
    await Promise.all(writers.map((w) => w.stop())) // in-flight (possibly blocked) writes finish first
  }
}

async function measureWithWriters({ kind, table, batchSize, ctx, writes, helperPids, writers }) {
  const { options, url, admin, monitor, postmasterPid, ids, cliRoot, workDir } = ctx
  if (options.writers) writers.push(await startWriters(url, table, ids.live, options.writers, 'live', options.writeRate, writes))
  if (options.orphanWriters)
    writers.push(await startWriters(url, table, ids.orphans, options.orphanWriters, 'orphan', options.writeRate, writes))
  for (const w of writers) for (const pid of w.pids) helperPids.add(pid)
  await sleep(writers.length ? 1000 : 0) // writers warm up before the clock starts

  let updateClient
  if (kind === 'single') {
    updateClient = new pg.Client({ connectionString: url, application_name: UPDATE_APP })
    updateClient.on('error', () => undefined)
    await updateClient.connect()
  }
  const load = loadavg()[0]
  monitor.reset()
  const cpu0 = postmasterPid ? serverCpu(postmasterPid, helperPids) : null
  const t0 = performance.now()
  const result = { kind, table, batchSize, loadavg1: round(load, 2) }
  let t1
  try {
    if (kind === 'single') {
      const r = await updateClient.query(singleUpdateSql(table))
      t1 = performance.now()
      const ms = t1 - t0
      Object.assign(result, { closed: r.rowCount, ms: round(ms), wallMs: round(ms), rowsPerSec: round(r.rowCount / (ms / 1000)) })
    } else {
      const logged = ctx.serverLog !== null
      if (logged) ctx.serverLog.length = 0
      const cliUrl = logged ? withStatementLogging(url) : url
      const args = ['sessions', 'sweep', '--apply', '--json', '--database-url', cliUrl, '--table', `public.${table}`]
      if (batchSize !== null) args.push('--batch-size', String(batchSize))
      const { stdout, wallMs } = await runCli(cliRoot, workDir, args)
      t1 = performance.now()
      const json = JSON.parse(stdout)
      Object.assign(result, {
        closed: json.closed,
        batches: json.batches,
        remaining: json.remaining,
        ms: json.durationMs,
        wallMs: round(wallMs),
        maxBatchMs: json.maxBatchMs,
        batching: json.batching,
        maxBatchSize: json.maxBatchSize,
        rowsPerSec: round(json.closed / (json.durationMs / 1000)),
        rowsPerSecWall: round(json.closed / (wallMs / 1000)),
        warnings: json.warnings,
      })
      if (logged) {
        await sleep(300) // the last log lines
        result.serverTime = statementBreakdown(ctx.serverLog.join('\n'))
        ctx.serverLog.length = 0
      }
    }
  } finally {
    await updateClient?.end().catch(() => undefined)
  }
  await sleep(200) // let exited backends be reaped into the postmaster's child CPU
  const cpu1 = postmasterPid ? serverCpu(postmasterPid, helperPids) : null
  const seen = monitor.snapshot()
  await Promise.all(writers.map((w) => w.stop())) // in-flight (possibly blocked) writes finish first
  writers.length = 0
  if (cpu0 && cpu1) result.serverCpuS = round(cpu1.total - cpu0.total - (cpu1.helpers - cpu0.helpers), 2)
  result.maxXactMsSeen = round(seen.maxXactMs[kind === 'single' ? UPDATE_APP : CLI_APP] ?? 0)
  result.maxWritersWaiting = seen.maxWritersWaiting
  result.writes = {
    live: options.writers ? latencyStats(writes, 'live', t0, t1) : null,
    orphan: options.orphanWriters ? latencyStats(writes, 'orphan', t0, t1) : null,
  }
  const {
    rows: [left],
  } = await admin.query(
    `SELECT count(*)::int AS n FROM ${table} WHERE is_active AND COALESCE(last_activity_at, session_start) < now() - interval '${ORPHAN_AFTER}'`,
  )
  result.orphansLeft = left.n
  await admin.query(`DROP TABLE ${table}`)
  return result
}

async function baseline(ctx, table) {
  const { options, url, ids } = ctx
  const writes = []
  const writers = []
  if (options.writers) writers.push(await startWriters(url, table, ids.live, options.writers, 'live', options.writeRate, writes))
  if (options.orphanWriters)
    writers.push(await startWriters(url, table, ids.orphans, options.orphanWriters, 'orphan', options.writeRate, writes))
  await sleep(1000)
  const t0 = performance.now()
  await sleep(options.baselineSeconds * 1000)
  const t1 = performance.now()
  await Promise.all(writers.map((w) => w.stop()))
  return {
    live: options.writers ? latencyStats(writes, 'live', t0, t1) : null,
    orphan: options.orphanWriters ? latencyStats(writes, 'orphan', t0, t1) : null,
  }
}

// ---------------------------------------------------------------------------------------------
// EXPLAIN of the CLI's own batch statement, built by the compiled query builder

async function explainBatch(ctx, table) {
  const { cliRoot, url } = ctx
  const { Database } = await import(join(cliRoot, 'dist/db/database.js'))
  const { resolveSessionTable } = await import(join(cliRoot, 'dist/db/session-table.js'))
  const { closeBatch } = await import(join(cliRoot, 'dist/db/queries/sessions.js'))
  const { loadConfig } = await import(join(cliRoot, 'dist/core/config.js'))
  const loaded = loadConfig({
    env: {},
    cwd: ctx.workDir,
    flags: [
      { key: 'database.url', flag: '--database-url', value: url },
      { key: 'sessions.table', flag: '--table', value: `public.${table}` },
    ],
  })
  const db = new Database({ ...loaded.config.database, statementTimeout: 600 })
  const out = []
  try {
    const t = await resolveSessionTable(db, loaded.config.sessions)
    const client = await db.pool.connect()
    try {
      const {
        rows: [{ cutoff }],
      } = await client.query(`SELECT now() - interval '${ORPHAN_AFTER}' AS cutoff`)
      const {
        rows: [{ id: auditId }],
      } = await client.query(
        `INSERT INTO ${loaded.config.wardenSchema}.audit_log (actor, command, target, reason, filter, dry_run, status) VALUES ('bench', 'bench explain', $1, 'orphan_sweep', '{}', true, 'ok') RETURNING id`,
        [table],
      )
      const { ADAPTIVE_START } = await import(join(cliRoot, 'dist/sessions/close-sessions.js'))
      // an adaptive sweep's first batch; later ones depend on the rate measured
      const sizes = ctx.options.batchSizes.map((bs) => bs ?? loaded.config.sweep.batchSize ?? ADAPTIVE_START ?? 10_000)
      const build = (cursor, batchSize) =>
        closeBatch(
          t,
          { silentBefore: cutoff },
          { cursor, batchSize, closeTimestamp: 'now', auditTable: `${loaded.config.wardenSchema}.audit_log`, auditId },
        )
      const explain = async (label, cursor, batchSize) => {
        const statement = build(cursor, batchSize)
        await client.query('BEGIN')
        try {
          const { rows } = await client.query({ text: `EXPLAIN (ANALYZE, BUFFERS) ${statement.text}`, values: statement.values })
          out.push({
            label: `${label}, batch size ${batchSize}`,
            statement: statement.text,
            values: statement.values,
            plan: rows.map((r) => r['QUERY PLAN']).join('\n'),
          })
        } finally {
          await client.query('ROLLBACK')
        }
      }
      const { rows: planSingle } = await client.query(`EXPLAIN ${singleUpdateSql(table)}`)
      out.push({
        label: 'single UPDATE (plan only)',
        statement: singleUpdateSql(table),
        plan: planSingle.map((r) => r['QUERY PLAN']).join('\n'),
      })
      for (const size of sizes) await explain('first batch', undefined, size)
      // close half of the orphans for real (this copy is thrown away), taking the cursor from the
      // statement's own output whatever its format, then look at the next batch
      let cursor
      const target = Math.floor(ctx.options.orphans / 2)
      for (let closed = 0; closed < target;) {
        const statement = build(cursor, sizes[0])
        const {
          rows: [batch],
        } = await client.query({ text: statement.text, values: statement.values })
        if (Number(batch.picked) === 0) break
        closed += Number(batch.picked)
        cursor = batch.cursor ?? cursor
      }
      for (const size of sizes) await explain(`a batch after ${fmtInt(target)} sessions were closed`, cursor, size)
    } finally {
      client.release()
    }
  } finally {
    await db.close()
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// report

const labelOf = (r) =>
  r.kind === 'single' ? '(a) single UPDATE' : `(b) sweep, ${r.batchSize === null ? 'adaptive' : `batch ${r.batchSize}`}`

function summarise(rounds) {
  const groups = new Map()
  for (const r of rounds.flatMap((x) => x.results)) {
    const key = labelOf(r)
    if (!groups.has(key)) groups.set(key, [])
    groups.get(key).push(r)
  }
  const summary = []
  for (const [label, rs] of groups) {
    summary.push({
      label,
      kind: rs[0].kind,
      batchSize: rs[0].batchSize,
      runs: rs.length,
      closed: median(rs.map((r) => r.closed)),
      ms: median(rs.map((r) => r.ms)),
      wallMs: median(rs.map((r) => r.wallMs)),
      rowsPerSec: median(rs.map((r) => r.rowsPerSec)),
      rowsPerSecWall: median(rs.map((r) => r.rowsPerSecWall ?? r.rowsPerSec)),
      ratio: median(rs.map((r) => r.ratio)),
      ratioWall: median(rs.map((r) => r.ratioWall)),
      serverCpuS: median(rs.map((r) => r.serverCpuS)),
      cpuRatio: median(rs.map((r) => r.cpuRatio)),
      batches: median(rs.map((r) => r.batches)),
      maxBatchSize: rs.some((r) => r.maxBatchSize !== undefined) ? Math.max(...rs.map((r) => r.maxBatchSize ?? 0)) : null,
      maxBatchMsMedian: median(rs.map((r) => r.maxBatchMs)),
      maxBatchMsWorst: rs.some((r) => r.maxBatchMs !== undefined) ? Math.max(...rs.map((r) => r.maxBatchMs ?? 0)) : null,
      maxXactMsSeenWorst: Math.max(...rs.map((r) => r.maxXactMsSeen ?? 0)),
      liveP50: median(rs.map((r) => r.writes.live?.p50)),
      liveP99: median(rs.map((r) => r.writes.live?.p99)),
      liveMax: median(rs.map((r) => r.writes.live?.max)),
      liveN: median(rs.map((r) => r.writes.live?.n)),
      orphanP50: median(rs.map((r) => r.writes.orphan?.p50)),
      orphanP99: median(rs.map((r) => r.writes.orphan?.p99)),
      orphanMax: median(rs.map((r) => r.writes.orphan?.max)),
      orphanN: median(rs.map((r) => r.writes.orphan?.n)),
      maxWritersWaiting: Math.max(...rs.map((r) => r.maxWritersWaiting ?? 0)),
      loadavg1: median(rs.map((r) => r.loadavg1)),
      serverTime: rs.some((r) => r.serverTime)
        ? Object.fromEntries(Object.keys(rs.find((r) => r.serverTime).serverTime).map((k) => [k, median(rs.map((r) => r.serverTime?.[k]))]))
        : null,
    })
  }
  return summary
}

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ')} |`
  return [
    line(headers),
    `|${widths.map((w, i) => (i === 0 ? ':' : '') + '-'.repeat(w + 1) + (i === 0 ? '' : ':')).join('|')}|`,
    ...rows.map(line),
  ].join('\n')
}

function renderReport(report) {
  const s = report.summary
  const out = []
  out.push(
    `rows ${fmtInt(report.shape.rows)}, orphans ${fmtInt(report.shape.orphans)}, live ${fmtInt(report.shape.live)}; ${report.rounds.length} round(s); medians over rounds; writers: ${report.options.writers} live + ${report.options.orphanWriters} orphan-touching clients at ${report.options.writeRate} writes/s each`,
  )
  out.push('')
  out.push(
    table(
      [
        'run',
        'closed',
        'time s',
        'rows/s',
        'vs (a)',
        'wall rows/s',
        'vs (a) wall',
        'server CPU s',
        'batches',
        'largest batch',
        'longest batch ms (median / worst)',
        'longest xact seen ms (any statement)',
      ],
      s.map((r) => [
        r.label,
        fmtInt(r.closed),
        fmtNum(r.ms / 1000, 2),
        fmtInt(r.rowsPerSec),
        r.kind === 'single' ? '1.00' : fmtNum(r.ratio, 2),
        fmtInt(r.rowsPerSecWall),
        r.kind === 'single' ? '1.00' : fmtNum(r.ratioWall, 2),
        r.serverCpuS === null ? '-' : `${fmtNum(r.serverCpuS, 1)}${r.kind === 'single' ? '' : ` (${fmtNum(r.cpuRatio, 2)}x)`}`,
        r.batches === null ? '-' : fmtInt(r.batches),
        r.maxBatchSize === null ? '-' : fmtInt(r.maxBatchSize),
        r.kind === 'single' ? `${fmtInt(r.ms)} (one transaction)` : `${fmtInt(r.maxBatchMsMedian)} / ${fmtInt(r.maxBatchMsWorst)}`,
        fmtInt(r.maxXactMsSeenWorst),
      ]),
    ),
  )
  out.push('')
  const b = report.baseline
  const rows = []
  if (b)
    rows.push([
      'writers alone (baseline)',
      b.live ? `${fmtNum(b.live.p50)} / ${fmtNum(b.live.p99)} / ${fmtNum(b.live.max)} (n=${b.live.n})` : '-',
      b.orphan ? `${fmtNum(b.orphan.p50)} / ${fmtNum(b.orphan.p99)} / ${fmtNum(b.orphan.max)} (n=${b.orphan.n})` : '-',
      '-',
    ])
  for (const r of s) {
    rows.push([
      r.label,
      r.liveN === null ? '-' : `${fmtNum(r.liveP50)} / ${fmtNum(r.liveP99)} / ${fmtNum(r.liveMax)} (n=${fmtInt(r.liveN)})`,
      r.orphanN === null ? '-' : `${fmtNum(r.orphanP50)} / ${fmtNum(r.orphanP99)} / ${fmtNum(r.orphanMax)} (n=${fmtInt(r.orphanN)})`,
      String(r.maxWritersWaiting),
    ])
  }
  out.push(
    table(['concurrent writes, ms', 'live sessions p50 / p99 / max', 'orphans p50 / p99 / max', 'writers waiting on a lock (max)'], rows),
  )
  out.push('')
  const timed = s.filter((r) => r.serverTime)
  if (timed.length) {
    out.push(
      table(
        [
          'sweep: server time by statement, ms',
          'wall (durationMs)',
          'batch statements',
          'pre-count + final count',
          'sample',
          'other',
          'longest batch (server)',
        ],
        timed.map((r) => [
          r.label,
          fmtInt(r.ms),
          `${fmtInt(r.serverTime.batchMs)} (${fmtInt(r.serverTime.batchExecutions)})`,
          fmtInt(r.serverTime.countMs),
          fmtInt(r.serverTime.sampleMs),
          fmtInt(r.serverTime.otherMs),
          fmtInt(r.serverTime.maxBatchExecMs),
        ]),
      ),
    )
    out.push('')
  }
  out.push('per round:')
  out.push(
    table(
      [
        'round',
        'run',
        'order',
        'closed',
        'time s',
        'rows/s',
        'vs (a)',
        'server CPU s',
        'longest batch ms',
        'live p99',
        'orphan p99',
        'load1',
      ],
      report.rounds.flatMap((x) =>
        x.results.map((r) => [
          x.round,
          labelOf(r),
          r.order,
          fmtInt(r.closed),
          fmtNum(r.ms / 1000, 2),
          fmtInt(r.rowsPerSec),
          r.kind === 'single' ? '1.00' : fmtNum(r.ratio, 2),
          r.serverCpuS === undefined ? '-' : fmtNum(r.serverCpuS, 1),
          r.kind === 'single' ? '-' : fmtInt(r.maxBatchMs),
          fmtNum(r.writes.live?.p99),
          fmtNum(r.writes.orphan?.p99),
          fmtNum(r.loadavg1, 2),
        ]),
      ),
    ),
  )
  out.push('')
  for (const v of report.verdict)
    out.push(
      `target (wall rate >= ${GOAL_RATIO * 100} % of (a), every batch <= 1 s), ${v.label}: ${v.met ? 'MET' : 'MISSED'} — wall rate ${fmtNum(v.ratioWall * 100, 0)} % (median; ${fmtNum(v.ratio * 100, 0)} % by durationMs), longest batch ${fmtInt(v.maxBatchMsWorst)} ms (worst of ${v.runs})`,
    )
  return out.join('\n')
}

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  const options = parseOptions(process.argv.slice(2))
  const startedAt = new Date()
  const cleanups = []
  let interrupted = false
  const cleanup = async () => {
    if (currentChild) currentChild.kill('SIGTERM')
    // writers first (a blocked write gives up when the server goes), bounded so a stuck one cannot hold the exit
    await Promise.race([Promise.all([...activeWriters].map((w) => w.stop().catch(() => undefined))), sleep(3000)])
    while (cleanups.length)
      await cleanups
        .pop()()
        .catch((error) => log(`cleanup: ${error.message}`))
  }
  const onSignal = (signal) => {
    if (interrupted) return
    interrupted = true
    log(`${signal}: stopping, cleaning up`)
    cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  log(`pid ${process.pid}`)
  try {
    const cli = prepareCliRoot(options)
    cleanups.push(async () => cli.cleanup())
    const workDir = mkdtempSync(join(tmpdir(), `warden-bench-cwd-${process.pid}-`)) // no warden.config.yaml here
    cleanups.push(async () => rmSync(workDir, { recursive: true, force: true }))

    let url = options.databaseUrl
    let server = null
    let serverLog = null
    let postmasterPid = null
    if (!url) {
      log('starting embedded PostgreSQL')
      const { startEmbeddedPostgres } = await import(join(cli.root, 'dist/embedded/embedded-postgres.js'))
      server = await startEmbeddedPostgres({ onLog: (line) => serverLog?.push(line) })
      cleanups.push(async () => {
        log('stopping embedded PostgreSQL')
        await server.stop()
      })
      url = server.url
      serverLog = []
      postmasterPid = Number(readFileSync(join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || null
    }

    const admin = new pg.Client({ connectionString: url, application_name: 'warden-bench-admin' })
    admin.on('error', () => undefined)
    await admin.connect()
    cleanups.push(async () => admin.end())
    const {
      rows: [{ version }],
    } = await admin.query('SELECT version()')
    const settings = Object.fromEntries(
      (
        await admin.query(
          `SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'fsync', 'synchronous_commit', 'full_page_writes', 'work_mem', 'max_parallel_workers_per_gather')`,
        )
      ).rows.map((r) => [r.name, r.unit ? `${r.setting} ${r.unit}` : r.setting]),
    )
    log(`${version.split(' on ')[0]} (${server ? 'embedded' : 'external'}); CLI from ${cli.root}`)
    await runCli(cli.root, workDir, ['db', 'migrate', '--json', '--database-url', url])

    const dropAll = async () => {
      const { rows } = await admin.query(
        `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '${TABLE_PREFIX}%'`,
      )
      for (const r of rows) await admin.query(`DROP TABLE IF EXISTS public.${r.tablename}`)
    }
    await dropAll()
    cleanups.push(dropAll)
    const monitor = await startMonitor(url)
    cleanups.push(async () => monitor.stop())
    const ctx = { options, url, admin, monitor, postmasterPid, ids: null, cliRoot: cli.root, workDir, serverLog }

    const report = {
      bench: 'sweep',
      startedAt: startedAt.toISOString(),
      machine: machineInfo(),
      postgres: { version, embedded: !!server, settings },
      code: {
        // the repository's state; with --cli-root the CLI that ran may be another tree (see the shas)
        repoCommit: sh('git', ['rev-parse', '--short', 'HEAD']),
        repoSrcDirty: (sh('git', ['status', '--porcelain', '--', 'src']) ?? '') !== '',
        cliRoot: options.cliRoot ?? (options.snapshot ? 'snapshot of dist/' : 'dist/'),
        sessionsQueriesSha: sha256(join(cli.root, 'dist/db/queries/sessions.js')),
        closeSessionsSha: sha256(join(cli.root, 'dist/sessions/close-sessions.js')),
      },
      options: { ...options, databaseUrl: options.databaseUrl ? '(given)' : null },
      scales: [],
    }

    for (const shape of options.scales) {
      const { liveIdx, orphanIdx } = sessionIndexes(shape)
      ctx.ids = { live: liveIdx.map(sessionUuid), orphans: orphanIdx.map(sessionUuid) }
      const part = { shape, baseline: null, build: [], explain: null, rounds: [] }
      report.scales.push(part)
      await runScale(ctx, part)
      part.summary = summarise(part.rounds)
      part.verdict = verdictOf(part.summary)
    }
    // the first (or only) size, where a report of one size always kept it
    Object.assign(report, report.scales[0])
    report.scaleComparison = report.scales.length > 1 ? compareScales(report.scales) : null
    report.finishedAt = new Date().toISOString()

    mkdirSync(options.outDir, { recursive: true })
    const file = join(options.outDir, `sweep-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
    for (const part of report.scales) console.log(`${renderReport({ ...part, options: report.options })}\n`)
    if (report.scaleComparison) console.log(`${renderScales(report.scaleComparison)}\n`)
    console.log(`results: ${file}`)
    console.log(
      JSON.stringify({
        bench: 'sweep',
        repeat: options.repeat,
        scales: report.scales.map((part) => ({
          rows: part.shape.rows,
          orphans: part.shape.orphans,
          tableMiB: part.build[0]?.tableMiB,
          summary: part.summary.map((s) => ({
            label: s.label,
            batchSize: s.batchSize,
            rowsPerSec: s.rowsPerSec,
            rowsPerSecWall: s.rowsPerSecWall,
            ratio: s.kind === 'single' ? 1 : s.ratio,
            ratioWall: s.kind === 'single' ? 1 : s.ratioWall,
            serverCpuS: s.serverCpuS,
            maxBatchSize: s.maxBatchSize,
            maxBatchMsWorst: s.maxBatchMsWorst,
            liveP99: s.liveP99,
            orphanP99: s.orphanP99,
          })),
          verdict: part.verdict,
        })),
        scaleComparison: report.scaleComparison,
        file,
      }),
    )
  } catch (error) {
    if (interrupted) return new Promise(() => undefined) // the signal handler is cleaning up and exits
    throw error
  } finally {
    if (!interrupted) await cleanup()
  }
}

/** Every round of one table size: rebuild the copies, measure each run, in alternating order. */
async function runScale(ctx, part) {
  const { options, admin } = ctx
  const { shape } = part
  for (let roundNo = 1; roundNo <= options.repeat; roundNo++) {
    const runs = [{ kind: 'single', batchSize: null }, ...options.batchSizes.map((bs) => ({ kind: 'sweep', batchSize: bs }))]
    const names = runs.map((r, i) => `${TABLE_PREFIX}${r.kind === 'single' ? 'a' : `b${i}`}_${roundNo}`)
    const extra = []
    if (roundNo === 1 && options.baselineSeconds > 0) extra.push(`${TABLE_PREFIX}baseline`)
    if (roundNo === 1 && options.explain) extra.push(`${TABLE_PREFIX}explain`)
    log(`round ${roundNo}/${options.repeat}: building ${names.length + extra.length} identical tables of ${fmtInt(shape.rows)} sessions`)
    const built = await buildTables(admin, [...names, ...extra], shape)
    part.build.push({ round: roundNo, ...built, tables: names.length + extra.length })
    if (roundNo === 1 && options.baselineSeconds > 0) {
      log(`baseline: writers alone for ${options.baselineSeconds} s`)
      part.baseline = await baseline(ctx, `${TABLE_PREFIX}baseline`)
      await admin.query(`DROP TABLE ${TABLE_PREFIX}baseline`)
    }
    if (roundNo === 1 && options.explain) {
      log('EXPLAIN (ANALYZE, BUFFERS) of the CLI batch statement (rolled back)')
      part.explain = await explainBatch(ctx, `${TABLE_PREFIX}explain`)
      // the full plans go to the results file; stderr gets the nodes that decide the cost
      const keep = /Scan|Join|Nested Loop|Sort|LockRows|Limit|Rows Removed|Index Cond|Execution Time/
      for (const e of part.explain)
        process.stderr.write(
          `\n-- ${e.label}\n${e.plan
            .split('\n')
            .filter((l) => keep.test(l))
            .join('\n')}\n`,
        )
      await admin.query(`DROP TABLE ${TABLE_PREFIX}explain`)
    }
    // alternate: odd rounds (a) first, even rounds (a) last, sweeps rotated
    const order = runs.map((r, i) => ({ ...r, table: names[i] }))
    const sweeps = order.slice(1)
    const rot = (roundNo - 1) % Math.max(sweeps.length, 1)
    const rotated = [...sweeps.slice(rot), ...sweeps.slice(0, rot)]
    const sequence = roundNo % 2 === 1 ? [order[0], ...rotated] : [...rotated, order[0]]
    const results = []
    for (const [position, run] of sequence.entries()) {
      log(
        `round ${roundNo}: ${run.kind === 'single' ? '(a) single UPDATE' : `(b) warden sessions sweep --apply${run.batchSize ? ` --batch-size ${run.batchSize}` : ''}`} on ${run.table}`,
      )
      const r = await measure({ ...run, ctx })
      r.order = position + 1
      log(
        `  closed ${fmtInt(r.closed)} in ${fmtNum(r.ms / 1000, 2)} s = ${fmtInt(r.rowsPerSec)} rows/s` +
          (r.batches !== undefined ? `, ${r.batches} batches, longest ${r.maxBatchMs} ms` : '') +
          (r.serverCpuS !== undefined ? `, server CPU ${r.serverCpuS} s` : '') +
          `, live p99 ${fmtNum(r.writes.live?.p99)} ms, orphan p99 ${fmtNum(r.writes.orphan?.p99)} ms, load ${r.loadavg1}`,
      )
      results.push(r)
    }
    const single = results.find((r) => r.kind === 'single')
    for (const r of results) {
      if (r.kind === 'single') continue
      r.ratio = round(r.rowsPerSec / single.rowsPerSec, 3)
      r.ratioWall = round(r.rowsPerSecWall / single.rowsPerSec, 3)
      if (r.serverCpuS !== undefined && single.serverCpuS) r.cpuRatio = round(r.serverCpuS / single.serverCpuS, 3)
    }
    results.sort((x, y) => (x.kind === y.kind ? (x.batchSize ?? 0) - (y.batchSize ?? 0) : x.kind === 'single' ? -1 : 1))
    part.rounds.push({ round: roundNo, results })
  }
}

function verdictOf(summary) {
  return summary
    .filter((s) => s.kind === 'sweep')
    .map((s) => ({
      label: s.label,
      batchSize: s.batchSize,
      ratio: s.ratio,
      ratioWall: s.ratioWall,
      maxBatchMsWorst: s.maxBatchMsWorst,
      runs: s.runs,
      met: s.ratioWall >= GOAL_RATIO && s.maxBatchMsWorst <= 1000,
    }))
}

/** Each run's median rate at every size over the smallest size's: 1.0 is linear. */
function compareScales(scales) {
  const [base, ...bigger] = scales
  return bigger.map((part) => ({
    rows: part.shape.rows,
    baseRows: base.shape.rows,
    tableMiB: part.build[0]?.tableMiB ?? null,
    tablesPerRound: part.build[0]?.tables ?? null,
    databaseMiB: part.build[0]?.databaseMiB ?? null,
    runs: part.summary.map((s) => {
      const b = base.summary.find((x) => x.label === s.label)
      const rate = s.rowsPerSecWall ?? s.rowsPerSec
      const baseRate = b ? (b.rowsPerSecWall ?? b.rowsPerSec) : null
      const ratio = baseRate ? round(rate / baseRate, 3) : null
      return {
        label: s.label,
        rowsPerSecWall: rate,
        baseRowsPerSecWall: baseRate,
        ratio,
        maxBatchMsWorst: s.maxBatchMsWorst,
        met: s.kind === 'single' ? null : ratio !== null && ratio >= GOAL_SCALE && s.maxBatchMsWorst <= 1000,
      }
    }),
  }))
}

function renderScales(comparison) {
  const out = [`scale: wall rows/s at each size over the smallest size's (goal >= ${GOAL_SCALE}, every batch <= 1 s)`, '']
  out.push(
    table(
      ['run', 'rows', 'rows/s (wall)', `rows/s at the smallest`, 'ratio', 'longest batch ms (worst)', 'copy MiB', 'database MiB', 'goal'],
      comparison.flatMap((c) =>
        c.runs.map((r) => [
          r.label,
          fmtInt(c.rows),
          fmtInt(r.rowsPerSecWall),
          `${fmtInt(r.baseRowsPerSecWall)} (${fmtInt(c.baseRows)} rows)`,
          fmtNum(r.ratio, 2),
          fmtInt(r.maxBatchMsWorst),
          fmtInt(c.tableMiB),
          fmtInt(c.databaseMiB),
          r.met === null ? '-' : r.met ? 'MET' : 'MISSED',
        ]),
      ),
    ),
  )
  return out.join('\n')
}

main().catch((error) => {
  process.stderr.write(error?.usage ? `bench/sweep: ${error.message} (see --help)\n` : `[bench] failed: ${error?.stack ?? error}\n`)
  process.exitCode = error?.usage ? 64 : 1
})
