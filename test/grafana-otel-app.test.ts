import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'
import { expandVariables, labelValuesQuery, loadDashboardFiles, panelTargets } from './helpers/grafana-files.js'
import { metricNames } from './helpers/grafana-promql.js'
import { labelValues, liveVariables } from './helpers/grafana-stack.js'
import { startOtelApp, type OtelApp } from './helpers/otel-app.js'
import { startPrometheus, type RunningPrometheus } from './helpers/prometheus.js'

/** Grafana's $__rate_interval for a 1 s scrape over a short range, as in grafana-live.test.ts. */
const RATE_INTERVAL = '15s'
const DATA_DEADLINE_MS = 45_000

describe('the pool panels and the $pool variable on an app instrumented by OpenTelemetry, not by Warden', () => {
  let t: TestDatabase
  let app: OtelApp
  let prometheus: RunningPrometheus
  let instance: string

  beforeAll(async () => {
    t = await createTestDatabase('otel_app')
    app = await startOtelApp(t)
    instance = `127.0.0.1:${app.port}`
    prometheus = await startPrometheus([instance])
  })
  afterAll(async () => {
    await prometheus?.stop()
    await app?.stop()
    await t?.drop()
  })

  it(
    "every panel that reads only db_client_connection_* has data, from OpenTelemetry's own names, labels and unit-less histograms",
    async () => {
      // the app is scraped under OpenTelemetry's spelling, not Warden's: this is the case the `or` in each query is for
      const scope = `job="warden", instance="${instance}"`
      const spelling = async () => ({
        otel: (await prometheus.query(`count(db_client_connection_wait_time_bucket{${scope}})`))[0]?.value ?? 0,
        warden: (await prometheus.query(`count(db_client_connection_wait_time_seconds_bucket{${scope}})`)).length,
        states: (await prometheus.query(`db_client_connection_count{${scope}}`)).map((s) => s.metric.db_client_connection_state).sort(),
      })

      const targets = panelTargets(loadDashboardFiles()).filter((target) => {
        const names = metricNames(target.expr)
        return names.length > 0 && names.every((name) => name.startsWith('db_client_connection_'))
      })
      // pool dashboard: the timeouts stat, by state, used of max, pending, wait and use time (3 each), timeouts by pool; LLM dashboard: pool wait p95
      expect(targets.length).toBeGreaterThanOrEqual(12)
      const variables = liveVariables({ job: 'warden', instance }, RATE_INTERVAL)
      const evaluate = async (target: (typeof targets)[number]) => {
        const query = expandVariables(target.expr, variables)
        const samples = await prometheus.query(query)
        const problem =
          samples.length === 0
            ? 'no series'
            : samples.some((s) => Number.isFinite(s.value))
              ? undefined
              : `only ${samples.map((s) => s.value).join(', ')}`
        return { where: `${target.dashboard} / ${target.panel} / ${target.refId}`, query, problem }
      }
      const deadline = Date.now() + DATA_DEADLINE_MS
      let outcomes: Array<Awaited<ReturnType<typeof evaluate>>>
      for (;;) {
        outcomes = await Promise.all(targets.map(evaluate))
        if (outcomes.every((o) => o.problem === undefined) || Date.now() > deadline) break
        await sleep(1000)
      }
      expect(outcomes.filter((o) => o.problem !== undefined).map((o) => `${o.where}: ${o.problem}\n    ${o.query}`)).toEqual([])

      const seen = await spelling()
      expect(seen.otel).toBeGreaterThan(0)
      expect(seen.warden).toBe(0)
      expect(seen.states).toEqual(['idle', 'used'])
    },
    DATA_DEADLINE_MS + 30_000,
  )

  it("offers the app's pool in the pool dashboard's Pool variable", async () => {
    const url = new URL(t.url)
    const dashboard = loadDashboardFiles().find((file) => file.json.uid === 'warden-pool')!
    const variable = dashboard.json.templating?.list?.find((v) => v.name === 'pool')
    const query = variable && labelValuesQuery(variable)
    expect(query, 'the Pool variable is a label_values() query').toBeDefined()
    const selector = expandVariables(query!.selector, liveVariables({ job: 'warden', instance }, RATE_INTERVAL))
    const pools = await labelValues(prometheus.url, query!.label, selector)
    expect(pools).toContain(`${url.hostname}:${url.port}/${url.pathname.slice(1)}`)
  })
})
