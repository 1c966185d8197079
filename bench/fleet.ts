/**
 * `warden serve` watching a fleet: many targets (databases on one PostgreSQL), each with two
 * 200,000-row session tables, one target unreachable (a closed port) and one with a session
 * table locked (ACCESS EXCLUSIVE held by another transaction). The claims under test: a scrape
 * stays fast (p99 ≤ 50 ms), the healthy targets' gauges are as fresh as with one target (the
 * broken ones delay nobody), and collection cost grows linearly with the number of targets.
 *
 *   node --import tsx bench/fleet.ts [--targets 50] [--rows 200000] [--scrapes 400] [--pause-ms 100] [--spaced 20] [--rounds 10] [--url postgres://…]
 *
 * 1. Data: one database seeded with generate_series and VACUUM ANALYZE, copied with CREATE
 *    DATABASE … TEMPLATE for every other target (and for the one-target baseline).
 * 2. Scrape: the fleet service and a one-target service run side by side with the default
 *    collection settings; blocks of sequential scrapes alternate between them. Latency, and the
 *    age (warden_collector_age_seconds) of every target's gauges in every scrape's body.
 * 3. Cost: services of 1, 10 and --targets healthy targets (collection timers off), one
 *    collection round of all their targets at a time, taking turns: wall time, CPU of this
 *    process (the warden) and of the PostgreSQL server (embedded only) per round.
 *
 * Without --url (or WARDEN_BENCH_DATABASE_URL) it runs on its own embedded PostgreSQL. The
 * databases it creates are dropped at the end. Results: tables on stdout, JSON in bench/results/.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { stringify } from 'yaml'
import { loadConfig, type WardenConfig } from '../src/core/config.js'
import { DEFAULT_SESSIONS } from '../src/core/config-schema.js'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { createLogger } from '../src/server/logger.js'
import { startService, type Service } from '../src/server/service.js'
import { samples, scrapeOnce, scrapeSeries, sleep } from './lib/metrics.js'
import { benchPostgres, describeMachine, machine, seedSessions, withClient } from './lib/postgres.js'
import { table, writeResults } from './lib/results.js'
import { median, round, summarize } from './lib/stats.js'

const { values: args } = parseArgs({
  options: {
    targets: { type: 'string', default: '50' },
    rows: { type: 'string', default: '200000' },
    scrapes: { type: 'string', default: '400' },
    'pause-ms': { type: 'string', default: '100' },
    rounds: { type: 'string', default: '10' },
    spaced: { type: 'string', default: '20' },
    url: { type: 'string' },
  },
})
const TARGETS = Number(args.targets)
const ROWS = Number(args.rows)
const SCRAPES = Number(args.scrapes)
const PAUSE_MS = Number(args['pause-ms'])
const ROUNDS = Number(args.rounds)
const SPACED = Number(args.spaced)
const BLOCK = 50
if (!(TARGETS >= 3)) throw new Error('--targets: at least 3 (one unreachable, one locked, one healthy)')

const TABLES = ['conversation_sessions', 'conversation_sessions_b']
// the example schema's columns: the default mapping
const COLUMNS = DEFAULT_SESSIONS.columns
/** the collectors whose gauges should be fresh every round (checks runs every 60 s by design) */
const FRESH_COLLECTORS = ['sessions', 'pg_connections']

interface Target {
  name: string
  url: string
}

const logger = createLogger({ level: 'error', format: 'json' })
const configDir = mkdtempSync(join(tmpdir(), 'warden-bench-fleet-'))

/** A service over these targets through the real config loader (a YAML file, as `warden serve --config`). */
async function serve(name: string, targets: Target[], server: Record<string, unknown> = {}): Promise<Service> {
  const file = join(configDir, `${name}.yaml`)
  const tree = {
    server: { port: 0, ...server },
    targets: targets.map((t) => ({
      name: t.name,
      databaseUrl: t.url,
      sessions: TABLES.map((table) => ({ name: table, table: `public.${table}`, columns: COLUMNS, orphanAfter: '2h' })),
    })),
  }
  writeFileSync(file, stringify(tree))
  const { config } = loadConfig({ configPath: file, env: {} })
  const service = await startService({ config, logger })
  configs.set(service, config)
  return service
}

/** each service's live config: the bench turns scrape-time refreshes off and on through it */
const configs = new WeakMap<Service, WardenConfig>()

/** server.freshFor is read at every scrape: an hour means the scrape only serves the cache */
async function cacheOnly<T>(services: Service[], work: () => Promise<T>): Promise<T> {
  const saved = services.map((s) => configs.get(s)!.server.freshFor)
  for (const s of services) configs.get(s)!.server.freshFor = 3600
  try {
    return await work()
  } finally {
    services.forEach((s, i) => (configs.get(s)!.server.freshFor = saved[i]!))
  }
}

/** Seconds of age of each target's fresh-every-round collectors in one scrape's body. */
function ages(body: string): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (const s of samples(body, 'warden_collector_age_seconds')) {
    if (!FRESH_COLLECTORS.includes(s.labels.collector!)) continue
    const list = out.get(s.labels.target!) ?? []
    list.push(s.value)
    out.set(s.labels.target!, list)
  }
  return out
}

async function main(): Promise<void> {
  const db = await benchPostgres(args.url, { max_connections: String(Math.max(200, TARGETS * 6)) })
  const prefix = `warden_bench_fleet_${randomBytes(3).toString('hex')}`
  const created: string[] = []
  const services: Service[] = []
  let locker: pg.Client | undefined
  try {
    // 1. data: one seeded database, the rest copies of it
    const seedStarted = performance.now()
    const template = `${prefix}_00`
    await withClient(db.adminUrl, (admin) => admin.query(`CREATE DATABASE ${template}`))
    created.push(template)
    await withClient(db.urlOf(template), async (client) => {
      for (const t of TABLES) await seedSessions(client, t, ROWS)
    })
    const seededSeconds = (performance.now() - seedStarted) / 1000
    const copyStarted = performance.now()
    // template (the locked target) + TARGETS - 2 healthy + 1 for the one-target baseline
    await withClient(db.adminUrl, async (admin) => {
      const fileCopy = Number(db.version.split('.')[0]) >= 15 ? ' STRATEGY FILE_COPY' : ''
      for (let i = 1; i <= TARGETS - 1; i += 1) {
        const name = `${prefix}_${String(i).padStart(2, '0')}`
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}${fileCopy}`)
        created.push(name)
      }
    })
    const copySeconds = (performance.now() - copyStarted) / 1000
    process.stderr.write(`seeded 2 × ${ROWS} rows in ${seededSeconds.toFixed(1)} s; ${TARGETS - 1} copies in ${copySeconds.toFixed(1)} s\n`)
    const healthy: Target[] = created
      .slice(1, TARGETS - 1)
      .map((d, i) => ({ name: `healthy-${String(i + 1).padStart(2, '0')}`, url: db.urlOf(d) }))
    const locked: Target = { name: 'locked', url: db.urlOf(template) }
    const closed = await freePort()
    const unreachable: Target = { name: 'unreachable', url: `postgres://postgres:postgres@127.0.0.1:${closed}/postgres` }
    const solo: Target = { name: 'solo', url: db.urlOf(created[TARGETS - 1]!) }

    // 2. scrape: the fleet beside one target, default collection settings
    const fleet = await serve('fleet', [...healthy, locked, unreachable])
    const one = await serve('one', [solo])
    services.push(fleet, one)
    await Promise.all([fleet.collection.refresh(), one.collection.refresh()])
    locker = new pg.Client({ connectionString: locked.url })
    await locker.connect()
    await locker.query('BEGIN')
    await locker.query(`LOCK TABLE ${TABLES[0]} IN ACCESS EXCLUSIVE MODE`)

    const lines = {
      fleet: {
        times: [] as number[],
        errors: 0,
        healthyAges: [] as number[],
        lockedAges: new Map<string, number[]>(),
        unreachableAges: [] as number[],
      },
      one: { times: [] as number[], errors: 0, ages: [] as number[] },
    }
    const bodyBytes = { fleet: 0, one: 0 }
    const cached = { fleet: [] as number[], one: [] as number[] }
    const spaced = { fleet: [] as number[], one: [] as number[] }
    const scrapeFleet = async (count: number, warmup = 0) => {
      const r = await scrapeSeries(`${fleet.url}/metrics`, count, {
        warmup,
        pauseMs: PAUSE_MS,
        onScrape: ({ body }) => {
          bodyBytes.fleet = body.length
          for (const [target, list] of ages(body)) {
            if (target === 'locked') {
              // per collector: the locked table's own collector, and its siblings on the same target
              for (const s of samples(body, 'warden_collector_age_seconds').filter((x) => x.labels.target === 'locked')) {
                const l = lines.fleet.lockedAges.get(s.labels.collector!) ?? []
                l.push(s.value)
                lines.fleet.lockedAges.set(s.labels.collector!, l)
              }
            } else if (target === 'unreachable') lines.fleet.unreachableAges.push(...list)
            else lines.fleet.healthyAges.push(...list)
          }
        },
      })
      if (warmup === 0) {
        lines.fleet.times.push(...r.times)
        lines.fleet.errors += r.errors
      }
    }
    const scrapeOne = async (count: number) => {
      const r = await scrapeSeries(`${one.url}/metrics`, count, {
        pauseMs: PAUSE_MS,
        onScrape: ({ body }) => {
          bodyBytes.one = body.length
          lines.one.ages.push(...(ages(body).get('solo') ?? []))
        },
      })
      lines.one.times.push(...r.times)
      lines.one.errors += r.errors
    }
    await scrapeFleet(0, 20)
    await scrapeSeries(`${one.url}/metrics`, 0, { warmup: 20 })
    lines.fleet.healthyAges.length = 0
    lines.fleet.unreachableAges.length = 0
    lines.fleet.lockedAges.clear()
    for (let done = 0, b = 0; done < SCRAPES; done += BLOCK, b += 1) {
      const n = Math.min(BLOCK, SCRAPES - done)
      if (b % 2 === 0) await scrapeOne(n).then(() => scrapeFleet(n))
      else await scrapeFleet(n).then(() => scrapeOne(n))
      // the same, served from the cache only: what a scrape costs when it does not wait for a refresh
      await cacheOnly([fleet, one], async () => {
        for (const [service, into] of b % 2 === 0
          ? ([
              [one, cached.one],
              [fleet, cached.fleet],
            ] as const)
          : ([
              [fleet, cached.fleet],
              [one, cached.one],
            ] as const))
          into.push(...(await scrapeSeries(`${service.url}/metrics`, n, { pauseMs: PAUSE_MS })).times)
      })
    }
    // As Prometheus scrapes (every 15 s by default): each scrape finds every target's gauges older
    // than freshFor, starts a refresh of all of them and waits for it (at most scrapeWait).
    for (let i = 0; i < SPACED; i += 1) {
      for (const [service, into] of i % 2 === 0
        ? ([
            [one, spaced.one],
            [fleet, spaced.fleet],
          ] as const)
        : ([
            [fleet, spaced.fleet],
            [one, spaced.one],
          ] as const)) {
        await sleep(750)
        into.push((await scrapeOnce(`${service.url}/metrics`)).ms)
      }
    }
    // Prometheus' multi-target convention: one scrape job per database, /probe?target=NAME, each
    // target scraped on its own (round robin over the healthy ones, as many scrape targets would).
    const probe = { times: [] as number[], ages: [] as number[], bytes: 0 }
    for (let i = 0; i < SCRAPES; i += 1) {
      const name = healthy[i % healthy.length]!.name
      const scraped = await scrapeOnce(`${fleet.url}/probe?target=${encodeURIComponent(name)}`)
      probe.times.push(scraped.ms)
      probe.bytes = scraped.body.length
      probe.ages.push(...(ages(scraped.body).get(name) ?? []))
      await sleep(PAUSE_MS)
    }
    const lockedStatus = fleet.collection.get('locked')?.status()
    const unreachableStatus = fleet.collection.get('unreachable')?.status()
    await locker.query('ROLLBACK')
    await locker.end()
    locker = undefined
    await Promise.all([fleet.close(5_000), one.close(5_000)])
    services.length = 0

    // 3. cost per collection round against the number of targets (all healthy, no timers)
    const all = [...healthy, locked, solo].map((t, i) => ({ ...t, name: `t${String(i + 1).padStart(2, '0')}` }))
    const counts = [...new Set([1, 10, all.length].filter((n) => n <= all.length))]
    const cost = new Map<number, Service>()
    for (const n of counts) {
      const s = await serve(`cost-${n}`, all.slice(0, n), { collectInterval: '1h' })
      services.push(s)
      cost.set(n, s)
    }
    // the first round of each ran at start (with the 60 s checks collector); one more to warm up
    for (const s of cost.values()) await s.collection.refresh()
    const perRound = new Map<number, Array<{ wallMs: number; cpuMs: number; pgCpuMs: number | null }>>(counts.map((n) => [n, []]))
    for (let r = 0; r < ROUNDS; r += 1) {
      // taking turns, the order rotating, so machine load drifts over every size alike
      const order = counts.map((_, i) => counts[(i + r) % counts.length]!)
      for (const n of order) {
        const pg0 = db.cpuSeconds()
        const cpu0 = process.cpuUsage()
        const t0 = performance.now()
        await cost.get(n)!.collection.refresh()
        const wallMs = performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        const pg1 = db.cpuSeconds()
        perRound
          .get(n)!
          .push({ wallMs, cpuMs: (cpu.user + cpu.system) / 1000, pgCpuMs: pg0 !== null && pg1 !== null ? (pg1 - pg0) * 1000 : null })
      }
    }
    const roundsMeasured = [...perRound.values()].flat().length
    await Promise.all(services.map((s) => s.close(5_000)))
    services.length = 0

    const costRows = counts.map((n) => {
      const rounds = perRound.get(n)!
      const wall = median(rounds.map((x) => x.wallMs))
      const cpu = median(rounds.map((x) => x.cpuMs))
      const pgCpu = rounds[0]!.pgCpuMs === null ? null : median(rounds.map((x) => x.pgCpuMs!))
      return {
        targets: n,
        rounds: rounds.length,
        wallMs: round(wall, 1),
        cpuMs: round(cpu, 1),
        cpuMsPerTarget: round(cpu / n, 2),
        pgCpuMs: pgCpu === null ? null : round(pgCpu, 1),
        pgCpuMsPerTarget: pgCpu === null ? null : round(pgCpu / n, 2),
        wallMsPerTarget: round(wall / n, 2),
      }
    })
    const m = machine(db)
    const lockedAges = Object.fromEntries([...lines.fleet.lockedAges].map(([c, v]) => [c, summarize(v, 3)]))
    const report = {
      date: new Date().toISOString(),
      targets: TARGETS,
      rows: ROWS,
      scrapes: SCRAPES,
      pauseMs: PAUSE_MS,
      rounds: ROUNDS,
      machine: m,
      seedSeconds: round(seededSeconds, 1),
      copySeconds: round(copySeconds, 1),
      bodyBytes,
      scrape: {
        fleet: { ...summarize(lines.fleet.times), errors: lines.fleet.errors },
        one: { ...summarize(lines.one.times), errors: lines.one.errors },
        fleetCacheOnly: summarize(cached.fleet),
        oneCacheOnly: summarize(cached.one),
        fleetSpaced: summarize(spaced.fleet),
        oneSpaced: summarize(spaced.one),
        probe: summarize(probe.times),
      },
      age: {
        fleetHealthy: summarize(lines.fleet.healthyAges, 3),
        one: summarize(lines.one.ages, 3),
        probe: summarize(probe.ages, 3),
        locked: lockedAges,
        unreachable: summarize(lines.fleet.unreachableAges, 3),
      },
      lockedStatus,
      unreachableStatus,
      cost: costRows,
      costRoundsMeasured: roundsMeasured,
    }
    const file = writeResults('fleet', report)

    console.log(describeMachine(m))
    console.log(
      `fleet: ${TARGETS} targets (${healthy.length} healthy, 1 with ${TABLES[0]} locked, 1 unreachable), 2 tables × ${ROWS} rows each; default collection (collectInterval 15 s, collectTimeout 5 s, freshFor 1 s, scrapeWait 250 ms); ${SCRAPES} scrapes per service in blocks of ${BLOCK}, ${PAUSE_MS} ms apart; exposition ${bodyBytes.fleet} / ${bodyBytes.one} bytes`,
    )
    const s = report.scrape
    const age = (a: { p50: number; p99: number; max: number }) => `${a.p50} / ${a.p99} / ${a.max}`
    const row = (name: string, x: ReturnType<typeof summarize>, errors: number | string, ages: string) => [
      name,
      x.n,
      x.p50,
      x.p90,
      x.p99,
      x.max,
      errors,
      ages,
    ]
    console.log(
      table(
        ['service', 'scrapes', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors', 'age of healthy gauges p50 / p99 / max s'],
        [
          row(`fleet (${TARGETS} targets), ${PAUSE_MS} ms apart`, s.fleet, s.fleet.errors, age(report.age.fleetHealthy)),
          row(`one target, ${PAUSE_MS} ms apart`, s.one, s.one.errors, age(report.age.one)),
          row('fleet, cache only (freshFor 1 h)', s.fleetCacheOnly, '', '–'),
          row('one target, cache only', s.oneCacheOnly, '', '–'),
          row('fleet, 1.5 s apart', s.fleetSpaced, '', '–'),
          row('one target, 1.5 s apart', s.oneSpaced, '', '–'),
          row(`fleet /probe?target=…, one healthy target a scrape (${probe.bytes} bytes)`, s.probe, '', age(report.age.probe)),
        ],
      ),
    )
    console.log()
    console.log(
      `broken targets' ages at scrape (p50 / p99 s): ${Object.entries(lockedAges)
        .map(([c, a]) => `locked ${c} ${a.p50} / ${a.p99}`)
        .join(', ')}; unreachable ${report.age.unreachable.p50} / ${report.age.unreachable.p99}`,
    )
    console.log()
    console.log(
      table(
        [
          'targets',
          'rounds',
          'wall ms / round',
          'wall ms / target',
          'warden CPU ms / round',
          'warden CPU ms / target',
          'PostgreSQL CPU ms / round',
          'PostgreSQL CPU ms / target',
        ],
        costRows.map((r) => [
          r.targets,
          r.rounds,
          r.wallMs,
          r.wallMsPerTarget,
          r.cpuMs,
          r.cpuMsPerTarget,
          r.pgCpuMs ?? '–',
          r.pgCpuMsPerTarget ?? '–',
        ]),
      ),
    )
    console.log(`results: ${file}`)
    if (s.fleet.p99 > 50) process.exitCode = 1
  } finally {
    await locker?.end().catch(() => undefined)
    await Promise.all(services.map((s) => s.close(5_000)))
    await withClient(db.adminUrl, async (admin) => {
      for (const name of created) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    }).catch((error: Error) => process.stderr.write(`could not drop the bench databases (${created.join(', ')}): ${error.message}\n`))
    rmSync(configDir, { recursive: true, force: true })
    await db.stop()
  }
}

await main()
