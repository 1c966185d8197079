import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { expandVariables, labelValuesQuery, loadDashboardFiles, panelTargets, type PanelTarget } from './helpers/grafana-files.js'
import { LEAKY_APP, labelValues, liveVariables, startLiveStack, type LiveStack } from './helpers/grafana-stack.js'

/**
 * What Grafana would substitute for $__rate_interval with Prometheus scraping every second and a
 * short time range: a few scrapes, so rate() and histogram_quantile() see recent traffic only.
 */
const RATE_INTERVAL = '15s'
/** How long the stack may take to fill every panel; generous for a loaded 2-core machine. */
const DATA_DEADLINE_MS = 45_000

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
      const targets = panelTargets(files)
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
    expect(chatHeld[0]?.value ?? 0).toBe(0)
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
        else expect(values.length, `${String(json.uid)} $${String(variable.name)}: ${selector}`).toBeGreaterThan(0)
      }
    }
  })
})
