import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import {
  dataPanels,
  expandVariables,
  labelValuesQuery,
  loadDashboardFiles,
  panelTargets,
  regexLiteral,
  type PanelTarget,
} from './helpers/grafana-files.js'
import { LEAKY_APP, LIVE_TARGETS, labelValues, liveVariables, startLiveStack, type LiveStack } from './helpers/grafana-stack.js'

/**
 * What Grafana would substitute for $__rate_interval with Prometheus scraping every second and a
 * short time range: a few scrapes, so rate() and histogram_quantile() see recent traffic only.
 */
const RATE_INTERVAL = '15s'
/** How long the stack may take to fill every panel; generous for a loaded 2-core machine. */
const DATA_DEADLINE_MS = 45_000

/**
 * Applications dashboard panels whose data this one-process stack cannot have: apps scraped
 * under a job of their own whose connections carry application_name = job (the held-idle join),
 * and a warden serve with prometheus.url (the app-* check tiles). test/app-checks.test.ts
 * evaluates them, with every other panel of that dashboard, against fixture apps that have both.
 */
const APPS_PANELS_CHECKED_WITH_FIXTURE_APPS = [
  'Checked out by the app, idle on the server',
  'Held idle, share of the pool max',
  'Application checks',
  'Application checks that could not run',
]

interface Outcome extends PanelTarget {
  query: string
  /** why the panel would show nothing: no series, or only NaN/±Inf values */
  problem?: string
}

describe('every panel of every dashboard has data from a real Warden, chat path and Prometheus', () => {
  let t: TestDatabase
  let stack: LiveStack
  const files = loadDashboardFiles()

  beforeAll(async () => {
    t = await createTestDatabase('grafana_live')
    stack = await startLiveStack(t)
  })
  afterAll(async () => {
    await stack?.stop()
    await t?.drop()
  })

  async function evaluate(target: PanelTarget): Promise<Outcome> {
    const query = expandVariables(target.expr, liveVariables(stack, RATE_INTERVAL))
    try {
      const samples = await stack.prometheus.query(query)
      if (samples.length === 0) return { ...target, query, problem: 'no series' }
      // Grafana draws NaN as a gap: a panel of NaN only (e.g. a quantile of no observations) shows nothing.
      if (!samples.some((sample) => Number.isFinite(sample.value)))
        return { ...target, query, problem: `only ${samples.map((s) => s.value).join(', ')}` }
      return { ...target, query }
    } catch (error) {
      return { ...target, query, problem: (error as Error).message }
    }
  }

  it(
    'evaluates each panel query through /api/v1/query with a non-empty, finite result',
    async () => {
      const apps = panelTargets(files.filter((file) => file.json.uid === 'warden-apps')).map((target) => target.panel)
      expect(apps).toEqual(expect.arrayContaining(APPS_PANELS_CHECKED_WITH_FIXTURE_APPS))
      const targets = panelTargets(files).filter(
        (target) => !(target.dashboard === 'warden-apps' && APPS_PANELS_CHECKED_WITH_FIXTURE_APPS.includes(target.panel)),
      )
      expect(targets.length).toBeGreaterThan(40)
      // Counters and histograms need a few scrapes of traffic before rate() has two points in the window.
      const deadline = Date.now() + DATA_DEADLINE_MS
      let outcomes: Outcome[]
      for (;;) {
        outcomes = await Promise.all(targets.map(evaluate))
        if (outcomes.every((outcome) => outcome.problem === undefined) || Date.now() > deadline) break
        await sleep(1000)
      }
      const noData = outcomes
        .filter((outcome) => outcome.problem !== undefined)
        .map(({ dashboard, panel, refId, problem, query }) => `${dashboard} / ${panel} / ${refId}: ${problem}\n    ${query}`)
      expect(noData, `panels with No data (traffic so far: ${JSON.stringify(stack.traffic)})`).toEqual([])

      // The traffic the panels show really happened, through the paths the dashboards claim.
      expect(stack.traffic.failures, stack.traffic.lastFailure).toBe(0)
      expect(stack.traffic.heldCalls).toBeGreaterThan(0)
      expect(stack.traffic.poolTimeouts).toBeGreaterThan(0)
      expect(Object.keys(stack.traffic.errors).some((status) => status.startsWith('5'))).toBe(true)
    },
    DATA_DEADLINE_MS + 60_000,
  )

  it('shows the anti-pattern where it happened: the leaky app idle in transaction, its held LLM calls and timeouts', async () => {
    const scope = `job="${stack.job}", instance="${stack.instance}"`
    const idle = await stack.prometheus.query(`warden_pg_idle_in_transaction_max_seconds{${scope}, application_name="${LEAKY_APP}"}`)
    expect(idle[0]?.value).toBeGreaterThan(0)
    const held = await stack.prometheus.query(
      `warden_db_connection_held_during_llm_call_total{${scope}, db_client_connection_pool_name="leaky", operation="summarise"}`,
    )
    expect(held[0]?.value).toBeGreaterThan(0)
    const timeouts = await stack.prometheus.query(`db_client_connection_timeouts_total{${scope}, db_client_connection_pool_name="leaky"}`)
    expect(timeouts[0]?.value).toBeGreaterThan(0)
    // the reference chat path releases before calling: its pools never count a held call
    const chatHeld = await stack.prometheus.query(
      `sum(warden_db_connection_held_during_llm_call_total{${scope}, db_client_connection_pool_name=~"chat_.*"})`,
    )
    // (absent means none counted; the selector does match the chat path's pools)
    expect(chatHeld.map((sample) => sample.value).filter((value) => value > 0)).toEqual([])
    const chatPools = await stack.prometheus.query(
      `count(db_client_connection_use_time_seconds_count{${scope}, db_client_connection_pool_name=~"chat_.*"})`,
    )
    expect(chatPools[0]?.value).toBeGreaterThan(0)
  })

  it("offers the live job and instance in each dashboard's variables (label_values through the label API)", async () => {
    for (const { json } of files) {
      for (const variable of json.templating?.list ?? []) {
        const query = labelValuesQuery(variable)
        if (variable.type !== 'query' || !query) continue
        const selector = expandVariables(query.selector, liveVariables(stack, RATE_INTERVAL))
        const values = await labelValues(stack.prometheus.url, query.label, selector)
        const expected = { job: stack.job, instance: stack.instance }[query.label]
        if (expected) expect(values, `${String(json.uid)} $${String(variable.name)}`).toContain(expected)
        else if (query.label === 'target') expect(values.sort(), `${String(json.uid)} $target`).toEqual(Object.keys(LIVE_TARGETS).sort())
        else if (query.label === 'table') expect(values.sort(), `${String(json.uid)} $table`).toEqual(Object.values(LIVE_TARGETS).sort())
        else expect(values.length, `${String(json.uid)} $${String(variable.name)}: ${selector}`).toBeGreaterThan(0)
      }
    }
    // $table lists the tables of the selected targets only
    const sessions = files.find((file) => file.json.uid === 'warden-sessions')!
    const table = labelValuesQuery(sessions.json.templating!.list!.find((v) => v.name === 'table')!)!
    const jobsOnly = { ...liveVariables(stack, RATE_INTERVAL), target: regexLiteral('jobs') }
    expect(await labelValues(stack.prometheus.url, 'table', expandVariables(table.selector, jobsOnly))).toEqual([LIVE_TARGETS.jobs])
  })

  it('keeps the two targets and their tables apart on every panel that is not a whole-selection figure, and $target/$table pick one', async () => {
    const perTarget = files.flatMap(({ json }) =>
      dataPanels(json)
        // the whole-selection tiles say so (test/grafana-lint.test.ts holds them to it)
        .filter((panel) => !/selected (targets|table)/.test(String(panel.description)))
        .flatMap((panel) =>
          (panel.targets ?? [])
            .filter((target) => String(target.expr).includes('$target'))
            .map((target) => ({
              where: `${String(json.uid)} / ${String(panel.title)} / ${String(target.refId)}`,
              expr: String(target.expr),
            })),
        ),
    )
    expect(perTarget.length).toBeGreaterThan(25)
    const all = liveVariables(stack, RATE_INTERVAL)
    const seen = new Set<string>()
    const problems: string[] = []
    for (const { where, expr } of perTarget) {
      for (const sample of await stack.prometheus.query(expandVariables(expr, all))) {
        if (sample.metric.target === undefined) problems.push(`${where}: a series without target`)
        else if (expr.includes('$table') && sample.metric.table === undefined) problems.push(`${where}: a series without table`)
        else seen.add(`${sample.metric.target}/${sample.metric.table ?? ''}`)
      }
      // one target, and one table of the other: only their series are left
      for (const sample of await stack.prometheus.query(expandVariables(expr, { ...all, target: regexLiteral('jobs') })))
        if (sample.metric.target !== 'jobs') problems.push(`${where}: target=jobs shows ${sample.metric.target}`)
      if (expr.includes('$table'))
        for (const sample of await stack.prometheus.query(expandVariables(expr, { ...all, table: regexLiteral(LIVE_TARGETS.chat) })))
          if (sample.metric.table !== LIVE_TARGETS.chat) problems.push(`${where}: table=${LIVE_TARGETS.chat} shows ${sample.metric.table}`)
    }
    expect(problems).toEqual([])
    expect([...seen].sort()).toEqual(
      expect.arrayContaining(['chat/', 'jobs/', ...Object.entries(LIVE_TARGETS).map(([target, table]) => `${target}/${table}`)]),
    )
  })
})
