/**
 * The Grafana dashboards' two renderings.
 *
 *   node --import tsx scripts/render-dashboards.ts json [--check]
 *     writes grafana/dashboards/<uid>.json from src/grafana (the one source of truth);
 *     --check exits 1 instead of writing when a committed file differs.
 *
 *   node --import tsx scripts/render-dashboards.ts png [--seconds 150] [--out docs/images] [--save-data f.json | --data f.json]
 *     runs the live stack of the Grafana tests (an embedded PostgreSQL, warden serve with
 *     scheduled sweeps, two chat servers with LLM traffic and faults, a leaky app, a real
 *     Prometheus: /usr/bin/prometheus) for --seconds, evaluates every panel's queries as range
 *     queries, and has headless Chromium (Debian's, installed with apt-get when missing and run
 *     as root) draw each dashboard with uPlot: docs/images/<uid>.png. --save-data keeps what was
 *     collected; --data draws from such a file without running the stack (to work on the look).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Database } from '../src/db/database.js'
import { startEmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { buildDashboards, dashboardFileName, DASHBOARDS_DIR, serializeDashboard } from '../src/grafana/index.js'
import type { Dashboard } from '../src/grafana/model.js'
import type { TestDatabase } from '../test/helpers/db.js'
import { expandVariables } from '../test/helpers/grafana-files.js'
import { liveVariables, queryRange, startLiveStack, type LiveStack } from '../test/helpers/grafana-stack.js'
import { ChromiumMissing, ensureChromium } from './preview/chromium.js'
import type { PreviewDashboard, PreviewPanel, PreviewSeries } from './preview/page.js'
import { renderPreviews } from './preview/render.js'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))

function writeJson(check: boolean): number {
  let stale = 0
  for (const dashboard of buildDashboards()) {
    const path = join(ROOT, DASHBOARDS_DIR, dashboardFileName(dashboard))
    const text = serializeDashboard(dashboard)
    let current: string | undefined
    try {
      current = readFileSync(path, 'utf8')
    } catch {
      current = undefined
    }
    if (current === text) continue
    stale += 1
    if (check) console.error(`${relative(ROOT, path)} differs from src/grafana; run: node --import tsx scripts/render-dashboards.ts json`)
    else {
      mkdirSync(join(ROOT, DASHBOARDS_DIR), { recursive: true })
      writeFileSync(path, text)
      console.log(`wrote ${relative(ROOT, path)}`)
    }
  }
  if (stale === 0) console.log('dashboards are up to date')
  return check && stale > 0 ? 1 : 0
}

/** Stands in for Grafana's $__rate_interval on these short runs: smooth, yet a few seconds' detail. */
const RATE_INTERVAL = '20s'
const WIDTH = 1600

/** Grafana's legend: the legend format with {{label}} filled in; __auto names the series by its labels. */
function legendName(format: string, metric: Record<string, string>, refId: string): string {
  if (format === '__auto') {
    const labels = Object.entries(metric).filter(([key]) => key !== 'job' && key !== 'instance')
    return labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(', ') : refId
  }
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label: string) => metric[label] ?? '').trim() || refId
}

/** Every panel's targets as Grafana would ask for them over one window (a panel's own range and minimum interval win). */
async function collect(
  dashboard: Dashboard,
  stack: LiveStack,
  window: { start: number; end: number; step: number },
): Promise<PreviewDashboard> {
  const variables = liveVariables(stack, RATE_INTERVAL)
  const panels: PreviewPanel[] = []
  for (const panel of dashboard.panels) {
    if (panel.type === 'row') {
      panels.push({ panel, series: [] })
      continue
    }
    const days = panel.timeFrom?.endsWith('d') ? Number(panel.timeFrom.slice(0, -1)) : 0
    const step = panel.interval === '1d' ? 86_400 : window.step
    const range = { start: days ? window.end - days * 86_400 : window.start, end: window.end, step }
    const series: PreviewSeries[] = []
    for (const target of panel.targets) {
      const expr = expandVariables(target.expr, { ...variables, __rate_interval: panel.interval === '1d' ? '1d' : RATE_INTERVAL })
      for (const result of await queryRange(stack.prometheus.url, expr, range.start, range.end, step))
        series.push({
          name: legendName(target.legendFormat, result.metric, target.refId),
          values: result.values.map(([t, v]) => [t, Number.isFinite(v) ? v : null]),
        })
    }
    series.sort((a, b) => a.name.localeCompare(b.name))
    panels.push({ panel, range, series })
  }
  const minutes = Math.round((window.end - window.start) / 60)
  return {
    title: dashboard.title,
    variables: [
      ['Data source', 'Prometheus'],
      ['Job', stack.job],
      ['Instance', 'All'],
    ],
    footer: `Preview: headless Chromium drawing the dashboard's panels with uPlot (scripts/render-dashboards.ts png) from a ${minutes}-minute run of the live test stack (mock LLM with faults, an app that holds a transaction across LLM calls), times in UTC; $__rate_interval = ${RATE_INTERVAL}. Grafana runs the same queries.`,
    width: WIDTH,
    panels,
  }
}

async function collectLive(seconds: number): Promise<Array<{ uid: string; preview: PreviewDashboard }>> {
  const server = await startEmbeddedPostgres()
  const name = 'warden_preview'
  const admin = new pg.Client({ connectionString: server.url })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(server.url)
  url.pathname = `/${name}`
  const db = new Database({ url: url.toString(), applicationName: 'warden-preview', connectTimeout: 5, statementTimeout: 30, poolMax: 4 })
  const t: TestDatabase = { url: url.toString(), name, db, exec: (text, values) => db.pool.query(text, values), drop: () => db.close() }
  console.log(`embedded PostgreSQL on ${server.port}; starting warden serve, chat servers, LLM traffic and Prometheus`)
  // Sweeps every 10 s let the new orphans pile up in between, as they would between real sweeps.
  const stack = await startLiveStack(t, { sweepSchedule: '*/10 * * * * *' })
  try {
    const started = Date.now() / 1000
    for (let left = seconds; left > 0; left -= 10) {
      console.log(
        `collecting: ${left} s left (turns ${stack.traffic.turns}, held LLM calls ${stack.traffic.heldCalls}, pool timeouts ${stack.traffic.poolTimeouts})`,
      )
      await sleep(Math.min(10, left) * 1000)
    }
    const end = Math.floor(Date.now() / 1000)
    // the first seconds are warm-up: no sweep has succeeded yet and rates have one sample
    const start = Math.ceil(started) + 15
    const window = { start, end, step: Math.max(1, Math.round((end - start) / 200)) }
    const previews = []
    for (const dashboard of buildDashboards()) previews.push({ uid: dashboard.uid, preview: await collect(dashboard, stack, window) })
    return previews
  } finally {
    await stack.stop()
    await db.close()
    await server.stop()
  }
}

function parseArgs(argv: string[]): Record<string, string> {
  const args: Record<string, string> = {}
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!
    if (arg.startsWith('--')) {
      const next = argv[i + 1]
      if (next !== undefined && !next.startsWith('--')) {
        args[arg.slice(2)] = next
        i += 1
      } else args[arg.slice(2)] = 'true'
    }
  }
  return args
}

async function main(): Promise<number> {
  const [mode, ...rest] = process.argv.slice(2)
  const args = parseArgs(rest)
  if (mode === 'json') return writeJson(args.check === 'true')
  if (mode === 'png') {
    const seconds = Number(args.seconds ?? 150)
    if (!(seconds >= 20)) throw new Error(`--seconds: expected a number of seconds, at least 20; got ${args.seconds}`)
    // before minutes of collection: a machine that cannot draw the pictures says so at once
    ensureChromium()
    const previews = args.data
      ? (JSON.parse(readFileSync(args.data, 'utf8')) as Array<{ uid: string; preview: PreviewDashboard }>)
      : await collectLive(seconds)
    if (args['save-data']) writeFileSync(args['save-data'], JSON.stringify(previews))
    const outDir = resolve(ROOT, args.out ?? 'docs/images')
    mkdirSync(outDir, { recursive: true })
    for (const path of await renderPreviews(previews, outDir)) console.log(`wrote ${relative(ROOT, path)}`)
    return 0
  }
  console.error(
    'usage: node --import tsx scripts/render-dashboards.ts json [--check] | png [--seconds 150] [--out docs/images] [--save-data f.json | --data f.json]',
  )
  return 64
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ChromiumMissing ? error.message : error)
    process.exit(1)
  },
)
