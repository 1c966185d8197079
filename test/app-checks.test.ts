import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { freePort } from '../src/embedded/embedded-postgres.js'
import { startMockLlm, type MockLlmServer } from '../src/llm/mock-server.js'
import { ChatClient } from '../src/loadtest/http-client.js'
import { parseJson, runCli, spawnCli, writeConfig } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { seedConversationSessions } from './helpers/fixtures.js'
import { expandVariables, labelValuesQuery, loadDashboardFiles, panelTargets } from './helpers/grafana-files.js'
import { labelValues } from './helpers/grafana-stack.js'
import { startOtelApp, type OtelApp } from './helpers/otel-app.js'
import { startPrometheus, type RunningPrometheus } from './helpers/prometheus.js'
import { serviceConfig, startTestService, valueOf, type TestService } from './helpers/server.js'
import { waitFor } from './helpers/wait.js'

type Row = Record<string, unknown>
interface DoctorJson {
  exitCode: number
  checks: Array<{ target: string; name: string; status: string; message: string; evidence: Row[] }>
}

/** What the fixture apps are configured to do: the figures the assertions are derived from. */
const LLM_LATENCY_MS = 1500
const WINDOW_SECONDS = 20
const HOLD_TX = { job: 'hold-tx', poolMax: 3 }
/**
 * Its job is its application_name (unique per run: the server is shared), so the Applications
 * dashboard, which cannot read `apps:`, matches it with PostgreSQL's view too.
 */
const HOLD_AUTOCOMMIT = { job: `hold-ac-${randomBytes(4).toString('hex')}`, poolMax: 2 }
const RELEASE = { poolMax: 3 }
/** Warden's own chat path (`warden chat serve`), in both patterns: pool and GenAI metrics spelled with units */
const CHAT = { poolMax: 2, hold: 'chat-hold', release: 'chat-release' }
/** a secret that must never reach output */
const HEADER_SECRET = `Bearer sekret-${randomBytes(6).toString('hex')}`

interface ChatPath {
  child: ChildProcess
  chatUrl: string
  metricsHost: string
  stop: () => Promise<void>
}

/** `warden chat serve` as a subprocess, with one client loop per pooled connection sending turns until stop(). */
async function startChatPath(databaseUrl: string, pattern: 'hold' | 'release', applicationName: string): Promise<ChatPath> {
  const child = spawnCli(
    [
      'chat',
      'serve',
      '--database-url',
      databaseUrl,
      '--port',
      '0',
      '--json',
      '--pattern',
      pattern,
      '--pool-max',
      String(CHAT.poolMax),
    ].concat(['--mock-latency', `${LLM_LATENCY_MS}ms`, '--grace', '1s']),
    { env: { WARDEN_APPLICATION_NAME: applicationName } },
  )
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr = (stderr + String(chunk)).slice(-4000)))
  const first = await new Promise<{ url: string; chatUrl: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chat serve did not listen in 30 s: ${stderr}`)), 30_000)
    child.stdout!.on('data', (chunk) => {
      stdout += String(chunk)
      if (!stdout.includes('\n')) return
      clearTimeout(timer)
      resolve(JSON.parse(stdout.split('\n')[0]!) as { url: string; chatUrl: string })
    })
    child.once('exit', (code) => reject(new Error(`chat serve exited ${code}: ${stderr}`)))
  })
  const api = new ChatClient(first.chatUrl, { maxSockets: CHAT.poolMax, timeoutMs: 30_000 })
  let running = true
  const loops = Array.from({ length: CHAT.poolMax }, async (_, index) => {
    const id = `${pattern}-${index}-${randomBytes(3).toString('hex')}`
    await api.request('POST', 'sessions', { id })
    while (running) await api.request('POST', `sessions/${id}/messages`, { message: 'what is my order status?' }).catch(() => sleep(100))
  })
  return {
    child,
    chatUrl: first.chatUrl,
    metricsHost: new URL(first.url).host,
    async stop() {
      running = false
      await Promise.allSettled(loops)
      api.close()
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}

describe('doctor --prometheus: the app-* checks on apps Warden never instrumented (real Prometheus, PostgreSQL, OpenTelemetry)', () => {
  const suffix = randomBytes(4).toString('hex')
  // application_name is server-wide and the machine's PostgreSQL is shared: unique per run
  const names = { holdTx: `hold-tx-${suffix}`, holdAutocommit: HOLD_AUTOCOMMIT.job, release: `release-${suffix}` }
  const releaseJob = names.release // no mapping: matched with application_name by name
  let t: TestDatabase
  let llm: MockLlmServer
  let faultyLlm: MockLlmServer
  let apps: OtelApp[] = []
  let chats: ChatPath[] = []
  // `warden chat serve` appends -chat to database.applicationName
  const chatNames = { hold: `chold-${suffix}`, release: `crel-${suffix}` }
  let warden: TestService
  let prometheus: RunningPrometheus
  let pool: string
  let report: DoctorJson
  let cli: Awaited<ReturnType<typeof runCli>>

  const check = (name: string) => report.checks.find((c) => c.name === name)!
  const rowOf = (name: string, job: string) => check(name).evidence.find((row) => row.job === job)!

  beforeAll(async () => {
    t = await createTestDatabase('app_checks')
    await seedConversationSessions(t, { orphans: 0, live: 2 })
    const url = new URL(t.url)
    pool = `${url.hostname}:${url.port}/${url.pathname.slice(1)}`
    llm = await startMockLlm({ latencyMs: LLM_LATENCY_MS, seed: 1 })
    // one in four calls of the autocommit holder fails: app-llm-errors must see it, for that job only
    faultyLlm = await startMockLlm({ latencyMs: LLM_LATENCY_MS, seed: 2, faults: { rate500: 0.25 } })
    apps = await Promise.all([
      startOtelApp(t, { APP_MODE: 'hold-tx', POOL_MAX: String(HOLD_TX.poolMax), APP_NAME: names.holdTx, LLM_URL: llm.url }),
      startOtelApp(t, {
        APP_MODE: 'hold-autocommit',
        POOL_MAX: String(HOLD_AUTOCOMMIT.poolMax),
        APP_NAME: names.holdAutocommit,
        LLM_URL: faultyLlm.url,
      }),
      startOtelApp(t, { APP_MODE: 'release', POOL_MAX: String(RELEASE.poolMax), APP_NAME: names.release, LLM_URL: llm.url }),
    ])
    chats = await Promise.all([startChatPath(t.url, 'hold', chatNames.hold), startChatPath(t.url, 'release', chatNames.release)])
    // the scraped warden serve runs the app checks against the same Prometheus: the dashboard's check tiles read them
    const prometheusPort = await freePort()
    warden = await startTestService(
      serviceConfig(t.url, {
        token: null,
        extra: `prometheus:\n  url: http://127.0.0.1:${prometheusPort}\n  window: ${WINDOW_SECONDS}s\n`,
      }),
    )
    const at = (app: OtelApp) => [`127.0.0.1:${app.port}`]
    prometheus = await startPrometheus([], {
      port: prometheusPort,
      jobs: {
        [HOLD_TX.job]: at(apps[0]!),
        [HOLD_AUTOCOMMIT.job]: at(apps[1]!),
        [releaseJob]: at(apps[2]!),
        warden: [new URL(warden.url).host],
        [CHAT.hold]: [chats[0]!.metricsHost],
        [CHAT.release]: [chats[1]!.metricsHost],
      },
    })
    // a full window of data: every app scraped, Warden's view of their backends, LLM calls recorded
    await sleep((WINDOW_SECONDS + 2) * 1000)
    for (const app of [...Object.values(names), `${chatNames.hold}-chat`, `${chatNames.release}-chat`]) {
      const deadline = Date.now() + 20_000
      while ((await prometheus.query(`warden_pg_connections{application_name="${app}"}`)).length === 0) {
        if (Date.now() > deadline) throw new Error(`Prometheus never saw warden_pg_connections for ${app}`)
        await sleep(500)
      }
    }
    const config = writeConfig(`database:
  url: ${t.url}
checks:
  idleInTransaction: { warn: 1s, crit: 2s }
  appHeldP95: { warn: 500ms, crit: 1s }
  # over a ${WINDOW_SECONDS} s window the use-time rate is exact to about one 1.5 s hold (~8%)
  appPoolUsed: { warn: 50, crit: 80 }
prometheus:
  url: http://127.0.0.1:1/never-used
  window: ${WINDOW_SECONDS}s
  headers:
    Authorization: ${HEADER_SECRET}
apps:
  - { job: ${HOLD_TX.job}, applicationName: ${names.holdTx} }
  - { job: ${HOLD_AUTOCOMMIT.job}, applicationName: ${names.holdAutocommit} }
  - { job: ${CHAT.hold}, applicationName: ${chatNames.hold}-chat }
  - { job: ${CHAT.release}, applicationName: ${chatNames.release}-chat }
`)
    cli = await runCli(['doctor', '--json', '--config', config, '--prometheus', prometheus.url], { timeoutMs: 60_000 })
    report = parseJson<DoctorJson>(cli)
  }, 180_000)

  afterAll(async () => {
    await prometheus?.stop()
    await Promise.all([...apps, ...chats].map((app) => app.stop()))
    await warden?.close()
    await llm?.close()
    await faultyLlm?.close()
    await t?.drop()
  })

  it('exits 2, runs the database checks and all five app checks, and never shows the Prometheus header secret', () => {
    expect(cli.code, cli.stderr).toBe(2)
    expect(report.checks.filter((c) => c.target === 'prometheus').map((c) => c.name)).toEqual([
      'app-pool-saturation',
      'app-pool-wait',
      'app-connection-held-long',
      'app-held-idle',
      'app-llm-errors',
    ])
    expect(check('connection-headroom').status).toBe('ok')
    expect(cli.stdout + cli.stderr).not.toContain(HEADER_SECRET.split(' ')[1])
  })

  it('app-pool-saturation blames both holders with their pool and figures, and passes the releasing app', () => {
    const saturation = check('app-pool-saturation')
    expect(saturation.status).toBe('crit')
    for (const { job, poolMax } of [HOLD_TX, HOLD_AUTOCOMMIT]) {
      // every worker (one per connection) holds its connection for the whole LLM call
      expect(rowOf('app-pool-saturation', job)).toMatchObject({ status: 'crit', pool, max: poolMax, usedPeak: poolMax })
      expect(rowOf('app-pool-saturation', job).usedPercent as number).toBeGreaterThanOrEqual(80)
      expect(saturation.message).toContain(`job "${job}" pool "${pool}"`)
    }
    const release = rowOf('app-pool-saturation', releaseJob)
    expect(release).toMatchObject({ status: 'ok', pool, max: RELEASE.poolMax })
    expect(release.usedPercent as number).toBeLessThan(50)
    expect(saturation.message).not.toContain(`job "${releaseJob}"`)
    // instrumentation-pg's used count stays one high after a release; the use-time histogram does not
    expect(release.usedAvgGauge as number).toBeGreaterThanOrEqual(release.usedAvg as number)
    expect(release.usedAvgFrom).toBe('db_client_connection_use_time')
    // Warden's own instrumented pools are spelled the OTLP way (db_client_connection_use_time_seconds): read as well
    const own = saturation.evidence.filter((row) => row.job === 'warden')
    expect(own.map((row) => row.pool)).toContain('warden:default')
    expect(own.every((row) => row.status === 'ok' && row.usedAvgFrom === 'db_client_connection_use_time')).toBe(true)
    const queries = saturation.evidence.at(-1) as { prometheus: string; queries: Record<string, string> }
    expect(queries.prometheus).toBe(prometheus.url)
    expect(queries.queries.usedAvg).toContain('db_client_connection_count')
  })

  it('app-connection-held-long gives use time in seconds at the LLM call scale for the holders, correlated with gen_ai_client_operation_duration', async () => {
    const held = check('app-connection-held-long')
    expect(held.status).toBe('crit')
    for (const job of [HOLD_TX.job, HOLD_AUTOCOMMIT.job]) {
      const row = rowOf('app-connection-held-long', job)
      expect(row).toMatchObject({ pool, heldAcrossLlmCalls: true })
      // each checkout spans one 1.5 s LLM call: p95 between the 1 s and 5 s bucket bounds
      expect(row.useP95Seconds as number).toBeGreaterThanOrEqual(1)
      expect(row.useP95Seconds as number).toBeLessThanOrEqual(5)
      expect(row.llmShareOfHeldTime as number).toBeGreaterThan(0.5)
      expect(row.llmShareOfHeldTime as number).toBeLessThanOrEqual(1.05)
    }
    expect(rowOf('app-connection-held-long', HOLD_TX.job).status).toBe('crit')
    expect(held.message).toMatch(/job "hold-tx" pool "[^"]+" .* keeps connections \d+\.\ds at p95 — held across LLM calls/)
    const release = rowOf('app-connection-held-long', releaseJob)
    expect(release).toMatchObject({ status: 'ok', heldAcrossLlmCalls: false })
    expect(release.useP95Seconds as number).toBeLessThan(0.5)
    // the releasing app spends far more time in LLM calls than with a connection checked out
    expect(release.llmShareOfHeldTime as number).toBeGreaterThan(5)
    // the figure Prometheus itself gives for the same histogram
    const [own] = await prometheus.query(
      `histogram_quantile(0.95, sum by (le) (rate(db_client_connection_use_time_bucket{job="${HOLD_TX.job}"}[${WINDOW_SECONDS}s])))`,
    )
    expect(own!.value).toBeGreaterThanOrEqual(1)
  })

  it('app-held-idle catches the autocommit holder that idle-in-transaction cannot see, and the transaction holder too', () => {
    const heldIdle = check('app-held-idle')
    expect(heldIdle.status).toBe('crit')
    const autocommit = rowOf('app-held-idle', HOLD_AUTOCOMMIT.job)
    expect(autocommit).toMatchObject({ status: 'crit', applicationName: names.holdAutocommit, max: HOLD_AUTOCOMMIT.poolMax })
    expect(autocommit.heldIdleAvg as number).toBeGreaterThanOrEqual(HOLD_AUTOCOMMIT.poolMax * 0.8)
    const autocommitStates = autocommit.postgresByState as Record<string, number>
    expect(autocommitStates.idle).toBeGreaterThanOrEqual(HOLD_AUTOCOMMIT.poolMax * 0.8)
    expect(autocommitStates['idle in transaction'] ?? 0).toBe(0)
    const tx = rowOf('app-held-idle', HOLD_TX.job)
    expect(tx).toMatchObject({ status: 'crit', applicationName: names.holdTx })
    expect((tx.postgresByState as Record<string, number>)['idle in transaction']).toBeGreaterThanOrEqual(HOLD_TX.poolMax * 0.8)
    const release = rowOf('app-held-idle', releaseJob)
    expect(release).toMatchObject({ status: 'ok', applicationName: names.release })
    expect(release.heldIdleAvg as number).toBeLessThan(0.5)
    expect(heldIdle.message).toContain(`job "${HOLD_AUTOCOMMIT.job}"`)
    expect(heldIdle.message).not.toContain(`job "${releaseJob}"`)

    // the server-side check sees the transaction holder and not the autocommit one
    const idleInTx = check('idle-in-transaction')
    const seen = new Set(idleInTx.evidence.map((row) => row.applicationName))
    expect(seen.has(names.holdTx)).toBe(true)
    expect(seen.has(names.holdAutocommit)).toBe(false)
  })

  it('app-llm-errors blames the job whose LLM fails, per model, in line with what the mock answered', () => {
    const errors = check('app-llm-errors')
    const faulty = rowOf('app-llm-errors', HOLD_AUTOCOMMIT.job)
    const stats = faultyLlm.stats()
    const mockPercent = ((stats.byStatus['500'] ?? 0) / stats.requests) * 100
    expect(faulty.model).toBe('claude-test')
    expect(faulty.errorPercent as number).toBeGreaterThan(5)
    expect(Math.abs((faulty.errorPercent as number) - mockPercent)).toBeLessThan(25)
    expect(['warn', 'crit']).toContain(faulty.status)
    expect(errors.status).toBe(faulty.status)
    for (const job of [HOLD_TX.job, releaseJob]) expect(rowOf('app-llm-errors', job)).toMatchObject({ status: 'ok', errorPercent: 0 })
    // p95 of successful 1.5 s calls, within the 1.28–2.56 s bucket
    expect(rowOf('app-llm-errors', releaseJob).p95Seconds as number).toBeGreaterThanOrEqual(1.28)
  })

  it('app-pool-wait reports wait p99 per pool: seconds-scale for the transaction holder whose callers queue, not for the releasing app', () => {
    const wait = check('app-pool-wait')
    expect(['ok', 'warn', 'crit']).toContain(wait.status)
    expect(rowOf('app-pool-wait', releaseJob)).toMatchObject({ status: 'ok', pool })
    expect(rowOf('app-pool-wait', releaseJob).waitP99Seconds as number).toBeLessThan(0.1)
  })

  it("Warden's own chat path, spelled with units: blames the hold pattern's pool, passes the release pattern", () => {
    for (const name of ['app-pool-saturation', 'app-connection-held-long', 'app-held-idle']) {
      expect(rowOf(name, CHAT.hold), name).toMatchObject({ status: 'crit' })
      expect(rowOf(name, CHAT.release), name).toMatchObject({ status: 'ok' })
    }
    expect(rowOf('app-pool-saturation', CHAT.hold)).toMatchObject({ max: CHAT.poolMax, usedPeak: CHAT.poolMax })
    expect(rowOf('app-connection-held-long', CHAT.hold)).toMatchObject({ heldAcrossLlmCalls: true })
    expect(rowOf('app-connection-held-long', CHAT.hold).llmP95Seconds as number).toBeGreaterThanOrEqual(1.28)
    expect(rowOf('app-connection-held-long', CHAT.release)).toMatchObject({ heldAcrossLlmCalls: false })
    // the hold pattern opens a transaction around the call: PostgreSQL sees it idle in transaction
    const held = rowOf('app-held-idle', CHAT.hold)
    expect(held.applicationName).toBe(`${chatNames.hold}-chat`)
    expect((held.postgresByState as Record<string, number>)['idle in transaction']).toBeGreaterThanOrEqual(CHAT.poolMax * 0.8)
    // attempts are exported by Warden's chat path only: the attempt-level share is there
    for (const job of [CHAT.hold, CHAT.release])
      expect(rowOf('app-llm-errors', job)).toMatchObject({ status: 'ok', errorPercent: 0, attemptErrorPercent: 0 })
    expect(rowOf('app-llm-errors', HOLD_TX.job).attemptErrorPercent).toBeNull()
  })

  it('the Applications dashboard shows the same per job and pool: every panel has data, holders and the releasing app told apart', async () => {
    const file = loadDashboardFiles().find((f) => f.json.uid === 'warden-apps')!
    const targets = panelTargets([file])
    expect(targets.length).toBeGreaterThan(20)
    // what Grafana sends with every variable on All, over the checks' window
    const all = { job: '.+', instance: '.+', pool: '.+', target: '.+', __rate_interval: `${WINDOW_SECONDS}s`, datasource: 'unused' }
    const evaluate = (panel: string, refId = 'A') => {
      const target = targets.find((t) => t.panel === panel && t.refId === refId)
      if (!target) throw new Error(`no panel "${panel}" / ${refId} on warden-apps`)
      return prometheus.query(expandVariables(target.expr, all))
    }
    // every panel, the check tiles included once warden serve's app checks have run on a window of data
    const empty = async () => {
      const found: string[] = []
      for (const target of targets)
        if (!(await prometheus.query(expandVariables(target.expr, all))).some((s) => Number.isFinite(s.value)))
          found.push(`${target.panel} / ${target.refId}`)
      return found
    }
    let noData = await empty()
    for (const deadline = Date.now() + 30_000; noData.length > 0 && Date.now() < deadline; noData = await empty()) await sleep(1000)
    expect(noData).toEqual([])

    const byJob = (samples: Awaited<ReturnType<typeof evaluate>>, match: Record<string, string> = {}) =>
      new Map(
        samples
          .filter((s) => Object.entries(match).every(([label, value]) => s.metric[label] === value))
          .map((s) => [s.metric.job ?? '', s.value]),
      )
    const holders = [HOLD_TX.job, HOLD_AUTOCOMMIT.job]

    // per job and pool, the pool label normalised from db_client_connection_pool_name
    const used = byJob(await evaluate('Pool used of max'), { pool })
    for (const job of [...holders, releaseJob]) expect(used.get(job), job).toBeGreaterThanOrEqual(0)
    // every worker holds its connection for the whole call: the holders' pools are full (the gauge lags a release by one)
    for (const job of holders) expect(used.get(job), job).toBeGreaterThanOrEqual(0.5)

    // the hold-across-LLM signature: use time at the LLM call's scale for the holders only, LLM p95 beside it
    const useP95 = byJob(await evaluate('Connection use p95 and LLM call p95', 'A'), { pool })
    for (const job of holders) {
      expect(useP95.get(job), job).toBeGreaterThanOrEqual(1)
      expect(useP95.get(job), job).toBeLessThanOrEqual(5)
    }
    expect(useP95.get(releaseJob)).toBeLessThan(0.5)
    const llmP95 = byJob(await evaluate('Connection use p95 and LLM call p95', 'B'))
    for (const job of [...holders, releaseJob]) expect(llmP95.get(job), job).toBeGreaterThanOrEqual(1.28)

    // held idle: the autocommit holder, which idle-in-transaction cannot see, near its whole pool; the releasing app near none
    const heldIdle = byJob(await evaluate('Held idle, share of the pool max'))
    expect(heldIdle.get(HOLD_AUTOCOMMIT.job)).toBeGreaterThanOrEqual(0.8)
    expect(heldIdle.get(releaseJob)).toBeLessThan(0.25)
    // a job whose application_name differs (mapped only for warden doctor) gets no figure rather than a false "all held"
    expect(heldIdle.has(HOLD_TX.job)).toBe(false)
    expect(heldIdle.has('warden')).toBe(false)
    const server = await evaluate('Checked out by the app, idle on the server', 'B')
    expect(byJob(server, { state: 'idle' }).get(HOLD_AUTOCOMMIT.job)).toBeGreaterThanOrEqual(1)
    expect(byJob(server, { state: 'idle in transaction' }).get(HOLD_AUTOCOMMIT.job) ?? 0).toBe(0)
    expect(server.some((s) => s.metric.job === HOLD_TX.job)).toBe(false)

    // GenAI per job and model: the job whose LLM fails, and only that one
    const errors = byJob(await evaluate('LLM error ratio by job and model'), { gen_ai_request_model: 'claude-test' })
    expect(errors.get(HOLD_AUTOCOMMIT.job)).toBeGreaterThan(0)
    expect(errors.get(HOLD_AUTOCOMMIT.job)).toBeLessThan(1)
    for (const job of [HOLD_TX.job, releaseJob]) expect(errors.get(job), job).toBe(0)

    // the app checks warden serve ran against this Prometheus, target "prometheus"
    // held idle is the one without a threshold override here that the fixture puts far past critical
    // (~100 % of the pool); warden serve runs the app checks every 15 s, and a run made before the
    // window had filled may have said warning: wait for the verdict a run over the full window gives
    const checks = await waitFor(
      async () => {
        const found = new Map((await evaluate('Application checks')).map((s) => [s.metric.check ?? '', s]))
        return found.get('app-held-idle')?.value === 2 ? found : undefined
      },
      "warden serve's app-held-idle verdict in Prometheus to be critical (2)",
      45_000,
      1000,
    )
    expect([...checks.keys()].sort()).toEqual(
      ['app-connection-held-long', 'app-held-idle', 'app-llm-errors', 'app-pool-saturation', 'app-pool-wait'].sort(),
    )
    expect([...checks.values()].every((s) => s.metric.target === 'prometheus')).toBe(true)
    const ran = await evaluate('Application checks that could not run')
    expect(ran.map((s) => [s.metric.check, s.value]).sort()).toEqual([...checks.keys()].sort().map((check) => [check, 1]))

    // the variables offer the fixture apps' jobs and their pool
    const variable = (name: string) => labelValuesQuery(file.json.templating!.list!.find((v) => v.name === name)!)!
    const jobs = await labelValues(prometheus.url, 'job', expandVariables(variable('job').selector, all))
    expect(jobs).toEqual(expect.arrayContaining([...holders, releaseJob, CHAT.hold, CHAT.release, 'warden']))
    const pools = await labelValues(prometheus.url, variable('pool').label, expandVariables(variable('pool').selector, all))
    expect(pools).toContain(pool)
  })

  it('warden serve with prometheus.url publishes the app checks as warden_check_status{target="prometheus"}', async () => {
    const served = await startTestService(
      serviceConfig(t.url, {
        token: null,
        extra: `checks:\n  appPoolUsed: { warn: 50, crit: 80 }\nprometheus:\n  url: ${prometheus.url}\n  window: ${WINDOW_SECONDS}s\napps:\n  - { job: ${HOLD_AUTOCOMMIT.job}, applicationName: ${names.holdAutocommit} }\n`,
      }),
    )
    try {
      const status = (samples: Awaited<ReturnType<TestService['scrape']>>['samples'], check: string) =>
        valueOf(samples, 'warden_check_status', { target: 'prometheus', check })
      const { samples } = await waitFor(
        async () => {
          const scrape = await served.scrape()
          return (
            status(scrape.samples, 'app-held-idle') !== undefined && status(scrape.samples, 'app-pool-saturation') !== undefined && scrape
          )
        },
        'the app checks in warden_check_status',
        30_000,
        500,
      )
      expect(status(samples, 'app-held-idle')).toBe(2)
      expect(status(samples, 'app-pool-saturation')).toBe(2)
      expect(valueOf(samples, 'warden_check_success', { target: 'prometheus', check: 'app-llm-errors' })).toBe(1)
    } finally {
      await served.close()
    }
  })

  it('Prometheus unreachable: each selected app check FAILs naming the redacted URL and the query; the database checks still run (exit 3)', async () => {
    const port = await freePort()
    const config = writeConfig(`database:\n  url: ${t.url}\n`)
    const result = await runCli(
      [
        'doctor',
        '--json',
        '--config',
        config,
        '--prometheus',
        `http://scraper:pw-${suffix}@127.0.0.1:${port}`,
        '--check',
        'app-pool-saturation',
        '--check',
        'connection-headroom',
      ],
      { timeoutMs: 30_000 },
    )
    expect(result.code, result.stderr).toBe(3)
    const failed = parseJson<DoctorJson>(result)
    expect(failed.checks.map((c) => [c.name, c.status])).toEqual([
      ['connection-headroom', 'ok'],
      ['app-pool-saturation', 'error'],
    ])
    const message = failed.checks[1]!.message
    expect(message).toContain(`http://scraper:*****@127.0.0.1:${port}`)
    expect(message).toContain('db_client_connection_count')
    expect(result.stdout + result.stderr).not.toContain(`pw-${suffix}`)
  })

  it('a Prometheus without the metrics: every app check is skipped with the metric it needs (exit 0)', async () => {
    const empty = await startPrometheus([], { jobs: {} })
    try {
      const config = writeConfig(`database:\n  url: ${t.url}\n`)
      const result = await runCli(
        [
          'doctor',
          '--json',
          '--config',
          config,
          '--prometheus',
          empty.url,
          ...['app-pool-saturation', 'app-pool-wait', 'app-connection-held-long', 'app-held-idle', 'app-llm-errors'].flatMap((c) => [
            '--check',
            c,
          ]),
        ],
        { timeoutMs: 30_000 },
      )
      expect(result.code, result.stderr).toBe(0)
      const skipped = parseJson<DoctorJson>(result).checks
      expect(skipped.map((c) => c.status)).toEqual(['skipped', 'skipped', 'skipped', 'skipped', 'skipped'])
      expect(skipped[0]!.message).toContain('db_client_connection_count')
      expect(skipped[1]!.message).toContain('db_client_connection_wait_time')
      expect(skipped[2]!.message).toContain('db_client_connection_use_time')
      expect(skipped[4]!.message).toContain('gen_ai_client_operation_duration')
    } finally {
      await empty.stop()
    }
  })

  it('refuses a bad Prometheus URL from the flag or the file (doctor: exit 3, could not run), without echoing header values', async () => {
    const flag = await runCli(['doctor', '--database-url', t.url, '--prometheus', 'ftp://prom'], { timeoutMs: 20_000 })
    expect(flag.code).toBe(3)
    expect(flag.stderr).toMatch(/prometheus\.url.*--prometheus.*http:\/\/ or https:\/\//s)
    const file = await runCli(
      [
        'doctor',
        '--config',
        writeConfig(`database:\n  url: ${t.url}\nprometheus:\n  url: not a url\n  headers:\n    Authorization: ${HEADER_SECRET}\n`),
      ],
      { timeoutMs: 20_000 },
    )
    expect(file.code).toBe(3)
    expect(file.stderr).toContain('prometheus.url')
    expect(file.stdout + file.stderr).not.toContain(HEADER_SECRET.split(' ')[1])
    const badHeader = await runCli(
      [
        'doctor',
        '--config',
        writeConfig(
          `database:\n  url: ${t.url}\nprometheus:\n  url: http://prom:9090\n  headers:\n    Authorization: [${HEADER_SECRET}]\n`,
        ),
      ],
      { timeoutMs: 20_000 },
    )
    expect(badHeader.code).toBe(3)
    expect(badHeader.stderr).toContain('prometheus.headers.Authorization')
    expect(badHeader.stdout + badHeader.stderr).not.toContain(HEADER_SECRET.split(' ')[1])
  })
})
