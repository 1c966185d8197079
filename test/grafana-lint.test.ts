import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'
import { parse as parseYaml } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chatMetrics } from '../src/chat/metrics.js'
import { buildDashboards, dashboardFileName, serializeDashboard } from '../src/grafana/index.js'
import { poolMetrics } from '../src/pool/metrics.js'
import { GEN_AI_DURATION, VARIANTS } from '../src/prometheus/app-metrics.js'
import { createRegistry } from '../src/metrics/registry.js'
import { createLogger } from '../src/server/logger.js'
import { startService, type Service } from '../src/server/service.js'
import { ROOT } from './helpers/cli.js'
import {
  DASHBOARDS_DIR,
  alertExpressions,
  dataPanels,
  labelValuesQuery,
  loadDashboardFiles,
  panelTargets,
  type DashboardFile,
  type GrafanaDashboard,
} from './helpers/grafana-files.js'
import { LINT_RULES, lintDashboards, type LintRule } from './helpers/grafana-lint.js'
import { metricNames, parsePromQL } from './helpers/grafana-promql.js'
import { serviceConfig } from './helpers/server.js'

const files = loadDashboardFiles()

describe('Grafana dashboards: one source, linted', () => {
  it('the committed JSON is exactly what src/grafana generates (run `node --import tsx scripts/render-dashboards.ts json`)', () => {
    const generated = buildDashboards()
    expect(
      readdirSync(DASHBOARDS_DIR)
        .filter((f) => f.endsWith('.json'))
        .sort(),
    ).toEqual(generated.map(dashboardFileName).sort())
    for (const dashboard of generated) {
      expect(readFileSync(join(DASHBOARDS_DIR, dashboardFileName(dashboard)), 'utf8'), dashboardFileName(dashboard)).toBe(
        serializeDashboard(dashboard),
      )
    }
  })

  it('ships the Sessions, Pool & database, LLM and Applications dashboards under fixed uids', () => {
    expect(files.map((f) => [f.file, f.json.uid])).toEqual([
      ['warden-apps.json', 'warden-apps'],
      ['warden-llm.json', 'warden-llm'],
      ['warden-pool.json', 'warden-pool'],
      ['warden-sessions.json', 'warden-sessions'],
    ])
  })

  it('passes every lint rule', () => {
    expect(lintDashboards(files, { gauges: OTEL_GAUGES })).toEqual([])
  })

  it('counts counters only through rate() or increase(), with $__rate_interval (what the lint enforces, seen from the queries)', () => {
    const targets = panelTargets(files)
    expect(
      targets.filter(
        (t) =>
          /_total\b|_bucket\b|_count\b|_sum\b/.test(t.expr) &&
          !/\b(rate|increase)\(/.test(t.expr) &&
          !t.expr.includes('db_client_connection_count'),
      ),
    ).toEqual([])
    expect(targets.filter((t) => /\[(?!\$__rate_interval\])[^\]]*\]/.test(t.expr))).toEqual([])
  })
})

/** db_client_connection_count is a gauge under OpenTelemetry's name, whatever its suffix says. */
const OTEL_GAUGES = new Set(['db_client_connection_count'])

describe('every metric a panel or an alert reads is one Warden publishes', () => {
  let service: Service
  /** series names the registry exposes: histograms as _bucket/_count/_sum */
  const published = new Map<string, string>()
  /** the label names of each of those series (without le) */
  const labelsOf = new Map<string, readonly string[]>()

  beforeAll(async () => {
    // The service as `warden serve` builds it; no database is needed to see what it registers.
    const config = serviceConfig('postgres://warden@127.0.0.1:1/unreachable', { token: null })
    const registry = createRegistry()
    service = await startService({ config, logger: createLogger({ level: 'silent' }), registry })
    // The chat path (`warden serve --chat`, `warden chat serve`) and apps' instrumented pools register into the same registry.
    chatMetrics(registry)
    poolMetrics(registry)
    for (const metric of await registry.getMetricsAsJSON()) {
      const type = String(metric.type)
      const names =
        type === 'histogram'
          ? ['_bucket', '_count', '_sum'].map((suffix) => metric.name + suffix)
          : type === 'summary'
            ? [metric.name, `${metric.name}_count`, `${metric.name}_sum`]
            : [metric.name]
      const labelNames = (registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] } | undefined)?.labelNames ?? []
      for (const name of names) {
        published.set(name, type)
        labelsOf.set(name, labelNames)
      }
    }
  })
  afterAll(async () => {
    await service?.close(1_000)
  })

  /**
   * OpenTelemetry's JavaScript Prometheus exporter leaves the unit out of histogram names
   * (db_client_connection_wait_time_bucket): the same series as a published `…_seconds` histogram.
   */
  const otelSpellingOf = (name: string) => {
    const warden = name.replace(/_(bucket|count|sum)$/, '_seconds_$1')
    return warden !== name && published.get(warden) === 'histogram' ? warden : undefined
  }
  const isPublished = (name: string) => published.has(name) || otelSpellingOf(name) !== undefined

  /**
   * The Applications dashboard also reads the spellings other instrumentations publish (the older
   * db_client_connections_*, millisecond histograms), exactly those the app-* checks' builders
   * list: a name outside that list fails like any other.
   */
  const APP_SPELLINGS = new Set(Object.values(VARIANTS).flatMap((variants) => variants.map((variant) => variant.name)))
  const isAppSpelling = (name: string) => APP_SPELLINGS.has(name) || APP_SPELLINGS.has(name.replace(/_(bucket|count|sum)$/, ''))

  it('panels', () => {
    const unknown = panelTargets(files).flatMap((t) =>
      metricNames(t.expr)
        .filter((name) => !isPublished(name) && !(t.dashboard === 'warden-apps' && isAppSpelling(name)))
        .map((name) => `${t.dashboard} / ${t.panel} / ${t.refId}: ${name}`),
    )
    expect(unknown).toEqual([])
  })

  it("the Applications dashboard reads every spelling the app-* checks read, and Warden's registry publishes the current ones", () => {
    const read = new Set(panelTargets(files.filter((f) => f.json.uid === 'warden-apps')).flatMap((t) => metricNames(t.expr)))
    const family = (name: string) => [name, ...['_bucket', '_count', '_sum'].map((suffix) => name + suffix)]
    const unread = [...APP_SPELLINGS, ...GEN_AI_DURATION].filter((name) => !family(name).some((series) => read.has(series)))
    expect(unread).toEqual([])
    // the newest spelling of each is one Warden itself publishes (its instrumented pools, the chat path)
    for (const variants of Object.values(VARIANTS))
      expect(isPublished(variants[0]!.name) || published.has(`${variants[0]!.name}_count`)).toBe(true)
  })

  it('alert rules (prometheus/alerts.yml)', () => {
    const alerts = alertExpressions()
    expect(alerts.length).toBeGreaterThan(5)
    const unknown = alerts.flatMap(({ alert, expr }) =>
      metricNames(expr)
        .filter((name) => !isPublished(name))
        .map((name) => `${alert}: ${name}`),
    )
    expect(unknown).toEqual([])
  })

  it("pool histograms are read under both spellings, Warden's and OpenTelemetry's exporter's, wherever they are read", () => {
    const reads = [
      ...panelTargets(files).map((t) => ({ where: `${t.dashboard} / ${t.panel} / ${t.refId}`, expr: t.expr })),
      ...alertExpressions().map(({ alert, expr }) => ({ where: alert, expr })),
    ]
    const oneSpellingOnly = reads.flatMap(({ where, expr }) => {
      const names = new Set(metricNames(expr))
      return [...names]
        .filter((name) => name.startsWith('db_client_connection_'))
        .flatMap((name) => {
          const warden = otelSpellingOf(name)
          if (warden !== undefined) return names.has(warden) ? [] : [`${where}: ${name} without ${warden}`]
          const unitless = name.replace(/_seconds_(bucket|count|sum)$/, '_$1')
          return unitless === name || names.has(unitless) ? [] : [`${where}: ${name} without ${unitless}`]
        })
    })
    expect(reads.some(({ expr }) => expr.includes('db_client_connection_wait_time_bucket'))).toBe(true)
    expect(oneSpellingOnly).toEqual([])
  })

  it('every selector of a metric with target (and table) labels filters by $target (and $table); pool series carry neither', () => {
    const fleetLabels = (name: string) => ['target', 'table'].filter((label) => labelsOf.get(name)?.includes(label))
    const unfiltered = panelTargets(files).flatMap((t) =>
      parsePromQL(t.expr).selectors.flatMap((selector) =>
        fleetLabels(selector.name ?? '')
          .filter((label) => !selector.matchers.some((m) => m.name === label && m.op === '=~' && m.value === `$${label}`))
          .map((label) => `${t.dashboard} / ${t.panel} / ${t.refId}: ${selector.name} without ${label}=~"$${label}"`),
      ),
    )
    expect(unfiltered).toEqual([])
    // the filter is on every series that has the label, and only there: OpenTelemetry apps' pool series have no target
    const filteredWithout = panelTargets(files).flatMap((t) =>
      parsePromQL(t.expr)
        .selectors.filter((selector) => selector.matchers.some((m) => m.value === '$target' || m.value === '$table'))
        .filter((selector) => !fleetLabels(selector.name ?? '').includes('target'))
        .map((selector) => `${t.dashboard} / ${t.panel}: ${selector.name}`),
    )
    expect(filteredWithout).toEqual([])
    expect(labelsOf.get('db_client_connection_count')).not.toContain('target')
    expect(labelsOf.get('warden_sessions_orphaned')).toEqual(expect.arrayContaining(['target', 'table']))
  })

  it('panels keep target (and table) in every aggregation, unless the panel says it shows all the selected targets together', () => {
    const AGGREGATION = /\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(/g
    const wholeSelection = new Set<string>()
    const split = files.flatMap(({ json }) =>
      dataPanels(json).flatMap((panel) =>
        (panel.targets ?? []).flatMap((target) => {
          const expr = String(target.expr)
          const labels = ['target', 'table'].filter((label) => metricNames(expr).some((name) => labelsOf.get(name)?.includes(label)))
          const dropped = [...expr.matchAll(AGGREGATION)].flatMap(([, , kind, list]) => {
            const names = (list ?? '').split(',').map((name) => name.trim())
            return labels.filter((label) => (kind === 'without' ? names.includes(label) : !names.includes(label)))
          })
          if (dropped.length === 0) return []
          const where = `${String(json.uid)} / ${String(panel.title)} / ${String(target.refId)}`
          // a figure for the whole selection is allowed when the panel says so
          if (/selected (targets|table)/.test(String(panel.description))) {
            wholeSelection.add(`${String(json.uid)} / ${String(panel.title)}`)
            return []
          }
          return [`${where}: ${[...new Set(dropped)].join(', ')} aggregated away in ${expr}`]
        }),
      ),
    )
    expect(split).toEqual([])
    // the stat tiles of the top rows and the held-idle comparison, and only those
    expect([...wholeSelection].sort()).toEqual([
      // the app's pools set against PostgreSQL's view of the application, whichever target it connects to
      'warden-apps / Checked out by the app, idle on the server',
      'warden-apps / Held idle, share of the pool max',
      'warden-pool / Connection slots used',
      'warden-pool / Free connection slots',
      'warden-pool / Longest idle in transaction',
      'warden-sessions / Oldest open session',
      'warden-sessions / Open sessions',
      'warden-sessions / Since the last successful sweep',
    ])
  })

  it('the dashboards that show target metrics offer $target, and $table where a session metric is read, table within target', () => {
    for (const { json } of files) {
      const names = new Set(panelTargets([{ file: '', json }]).flatMap((t) => metricNames(t.expr)))
      const variables = new Map((json.templating?.list ?? []).map((v) => [v.name, v]))
      const needs = ['target', 'table'].filter((label) => [...names].some((name) => labelsOf.get(name)?.includes(label)))
      expect(
        [...variables.keys()].filter((name) => name === 'target' || name === 'table'),
        String(json.uid),
      ).toEqual(needs)
      for (const label of needs) {
        const variable = variables.get(label)!
        expect(variable, `${String(json.uid)} $${label}`).toMatchObject({ type: 'query', multi: true, includeAll: true, allValue: '.+' })
        const query = labelValuesQuery(variable)!
        expect(query.label).toBe(label)
        // offered from a metric that has the label, within the selected job and instance (and target, for tables)
        const [selector] = parsePromQL(query.selector).selectors
        expect(labelsOf.get(selector!.name ?? ''), query.selector).toContain(label)
        const scoped = selector!.matchers.map((m) => `${m.name}${m.op}${m.value}`)
        expect(scoped).toEqual(
          expect.arrayContaining(['job=~$job', 'instance=~$instance', ...(label === 'table' ? ['target=~$target'] : [])]),
        )
      }
    }
  })

  it('alert rules on metrics with target (and table) keep those labels through every aggregation and match on them', () => {
    // every target of one Warden down at once: across its targets by design (the runbook says which alert to act on)
    const acrossTargets = new Set(['WardenPostgresDown'])
    const lost = alertExpressions().flatMap(({ alert, expr }) => {
      if (acrossTargets.has(alert)) return []
      const labels = ['target', 'table'].filter((label) => metricNames(expr).some((name) => labelsOf.get(name)?.includes(label)))
      const problems: string[] = []
      for (const [, kind, list] of expr.matchAll(/\b(by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
        const names = list!.split(',').map((name) => name.trim())
        for (const label of labels) {
          // a label a metric of the expression lacks (table on a connection metric) need not be kept
          if ((kind === 'by' || kind === 'on') && !names.includes(label)) problems.push(`${alert}: ${kind} (${list}) drops ${label}`)
          if ((kind === 'without' || kind === 'ignoring') && names.includes(label))
            problems.push(`${alert}: ${kind} (${list}) drops ${label}`)
        }
      }
      return problems
    })
    expect(lost).toEqual([])
    const withTarget = alertExpressions().filter(({ expr }) => metricNames(expr).some((name) => labelsOf.get(name)?.includes('target')))
    expect(withTarget.map(({ alert }) => alert)).toEqual(
      expect.arrayContaining(['WardenOrphanedSessions', 'WardenSweepNotSucceeding', 'WardenTargetDown', 'WardenConnectionHeadroomLow']),
    )
  })

  it("the lint's gauge exemption is a gauge in the registry", () => {
    for (const name of OTEL_GAUGES) expect(published.get(name), name).toBe('gauge')
  })

  it('every Warden, pool and LLM metric appears on some dashboard', () => {
    const used = new Set(panelTargets(files).flatMap((t) => metricNames(t.expr)))
    const notShown: Record<string, string> = {
      // the same failure shows as a growing "Metrics age by collector"
      warden_collector_success: 'shown through warden_collect_last_success_timestamp_seconds',
      // min of warden_target_up, without a target label (and not served by /probe): the dashboards show each target
      warden_pg_up: 'shown per target through warden_target_up',
    }
    const families = new Set(
      [...published.keys()]
        .filter((name) => !/^(process|nodejs)_/.test(name))
        .map((name) => (published.get(name) === 'histogram' ? name.replace(/_(bucket|count|sum)$/, '') : name)),
    )
    const missing = [...families].filter(
      (family) => !notShown[family] && ![...used].some((name) => name === family || name.startsWith(`${family}_`)),
    )
    expect(missing).toEqual([])
  })
})

describe('provisioning files work in a stock Grafana container', () => {
  const datasources = parseYaml(readFileSync(join(ROOT, 'grafana/provisioning/datasources/warden.yaml'), 'utf8')) as {
    apiVersion: number
    datasources: Array<{ uid: string; type: string; url: string; access: string }>
  }
  const providers = parseYaml(readFileSync(join(ROOT, 'grafana/provisioning/dashboards/warden.yaml'), 'utf8')) as {
    apiVersion: number
    providers: Array<{ type: string; options: { path: string } }>
  }
  const docs = readFileSync(join(ROOT, 'docs/grafana.md'), 'utf8')

  it('a Prometheus datasource with a fixed uid whose URL comes from $PROMETHEUS_URL', () => {
    expect(datasources.apiVersion).toBe(1)
    expect(datasources.datasources).toEqual([
      expect.objectContaining({ uid: 'warden-prometheus', type: 'prometheus', access: 'proxy', url: '${PROMETHEUS_URL}' }),
    ])
    // the default Grafana cannot express is given where it starts
    expect(docs).toContain('PROMETHEUS_URL="${PROMETHEUS_URL:-')
  })

  it('a file provider reading the directory the docs mount grafana/dashboards at', () => {
    expect(providers.apiVersion).toBe(1)
    const [provider] = providers.providers
    expect(provider?.type).toBe('file')
    const path = provider!.options.path
    expect(docs).toContain(`grafana/dashboards:${path}:ro`)
    expect(docs).toContain('grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro')
    expect(docs).toContain('grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro')
  })
})

// ---------------------------------------------------------------------------------------------
// Each rule can fail: a dashboard that passes, and one violation of each rule.
// ---------------------------------------------------------------------------------------------

const DS = { type: 'prometheus', uid: '${datasource}' }
const SCOPE = 'job=~"$job", instance=~"$instance"'

function goodDashboard(): GrafanaDashboard {
  const labelVariable = (name: string, label: string, query: string) => ({
    name,
    label,
    type: 'query',
    datasource: DS,
    query,
    multi: true,
    includeAll: true,
    allValue: '.+',
    refresh: 2,
  })
  const panel = (id: number, title: string, expr: string, unit: string, type = 'timeseries') => ({
    id,
    type,
    title,
    description: `${title}, explained.`,
    datasource: DS,
    fieldConfig: { defaults: { unit } },
    targets: [{ refId: 'A', datasource: DS, expr }],
  })
  return {
    uid: 'fixture',
    title: 'Fixture',
    tags: ['warden'],
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus' },
        labelVariable('job', 'Job', 'label_values(up, job)'),
        labelVariable('instance', 'Instance', 'label_values(up{job=~"$job"}, instance)'),
        labelVariable('code', 'Code', `label_values(http_requests_total{${SCOPE}}, code)`),
      ],
    },
    panels: [
      { id: 1, type: 'row', title: 'Row', panels: [] },
      panel(2, 'Requests', `sum by (code) (rate(http_requests_total{${SCOPE}}[$__rate_interval]))`, 'reqps'),
      panel(3, 'Latency', `histogram_quantile(0.95, sum by (le) (rate(http_duration_seconds_bucket{${SCOPE}}[$__rate_interval])))`, 's'),
      panel(4, 'Pool', `sum(db_client_connection_count{${SCOPE}})`, 'short', 'stat'),
    ],
  }
}

type Mutation = (d: GrafanaDashboard) => void
const panelOf = (d: GrafanaDashboard, id: number) => d.panels!.find((p) => p.id === id)!
const variableOf = (d: GrafanaDashboard, name: string) => d.templating!.list!.find((v) => v.name === name)!
const setExpr =
  (expr: string): Mutation =>
  (d) => {
    panelOf(d, 2).targets![0]!.expr = expr
  }

const VIOLATIONS: Array<[LintRule, string, Mutation]> = [
  ['uid-rule', 'no uid', (d) => delete d.uid],
  ['uid-rule', 'a uid Grafana refuses (over 40 characters)', (d) => (d.uid = 'x'.repeat(41))],
  ['dashboard-tags-rule', 'not tagged warden', (d) => (d.tags = ['ops'])],
  [
    'no-import-inputs-rule',
    'an import-only __inputs block',
    (d) => (d.__inputs = [{ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }]),
  ],
  [
    'template-datasource-rule',
    'no datasource variable',
    (d) => (d.templating!.list = d.templating!.list!.filter((v) => v.type !== 'datasource')),
  ],
  ['template-datasource-rule', 'a datasource variable for Loki', (d) => (variableOf(d, 'datasource').query = 'loki')],
  ['template-job-rule', 'no job variable', (d) => (d.templating!.list = d.templating!.list!.filter((v) => v.name !== 'job'))],
  ['template-job-rule', 'a single-select job variable', (d) => (variableOf(d, 'job').multi = false)],
  ['template-job-rule', "a job variable whose All is Grafana's value list", (d) => delete variableOf(d, 'job').allValue],
  ['template-instance-rule', 'a custom instance variable', (d) => (variableOf(d, 'instance').type = 'custom')],
  [
    'template-instance-rule',
    'an instance variable on a fixed datasource',
    (d) => (variableOf(d, 'instance').datasource = { type: 'prometheus', uid: 'P1809F7CD0C75ACF3' }),
  ],
  [
    'template-label-promql-rule',
    'a variable whose label_values() selector does not parse',
    (d) => (variableOf(d, 'code').query = 'label_values(http_requests_total{job=~"$job", code)'),
  ],
  ['template-label-promql-rule', 'a query variable that is not label_values()', (d) => (variableOf(d, 'code').query = 'up')],
  ['template-on-time-change-reload-rule', 'a variable refreshed only when the dashboard loads', (d) => (variableOf(d, 'job').refresh = 1)],
  [
    'panel-datasource-rule',
    'a panel on a fixed datasource uid',
    (d) => (panelOf(d, 2).datasource = { type: 'prometheus', uid: 'P1809F7CD0C75ACF3' }),
  ],
  ['panel-datasource-rule', 'a target without the datasource variable', (d) => (panelOf(d, 3).targets![0]!.datasource = null)],
  ['panel-units-rule', 'no unit', (d) => delete panelOf(d, 3).fieldConfig!.defaults!.unit],
  ['panel-units-rule', 'a unit Grafana does not know', (d) => (panelOf(d, 4).fieldConfig!.defaults!.unit = 'seconds')],
  ['panel-title-description-rule', 'no description', (d) => (panelOf(d, 2).description = '')],
  ['panel-title-description-rule', 'no title', (d) => (panelOf(d, 4).title = ' ')],
  ['panel-no-targets-rule', 'a panel without targets', (d) => (panelOf(d, 4).targets = [])],
  ['target-promql-rule', 'a query that does not parse', setExpr(`sum(rate(http_requests_total{${SCOPE}}[$__rate_interval])`)],
  ['target-rate-interval-rule', 'rate() over a fixed window', setExpr(`sum(rate(http_requests_total{${SCOPE}}[5m]))`)],
  ['target-rate-interval-rule', 'increase() over a fixed window', setExpr(`sum(increase(http_requests_total{${SCOPE}}[1d]))`)],
  ['target-counter-agg-rule', 'a raw counter', setExpr(`sum(http_requests_total{${SCOPE}})`)],
  [
    'target-counter-agg-rule',
    'histogram buckets without rate()',
    setExpr(`histogram_quantile(0.9, sum by (le) (http_duration_seconds_bucket{${SCOPE}}))`),
  ],
  [
    'target-counter-agg-rule',
    'a histogram _count through a gauge function',
    setExpr(`sum(delta(http_duration_seconds_count{${SCOPE}}[$__rate_interval]))`),
  ],
  ['target-job-rule', 'a selector without job', setExpr('sum(rate(http_requests_total{instance=~"$instance"}[$__rate_interval]))')],
  ['target-job-rule', 'a hard-coded job', setExpr('sum(rate(http_requests_total{job="api", instance=~"$instance"}[$__rate_interval]))')],
  [
    'target-instance-rule',
    'the second selector of a ratio without instance',
    setExpr(`sum(rate(a_total{${SCOPE}}[$__rate_interval])) / sum(rate(b_total{job=~"$job"}[$__rate_interval]))`),
  ],
]

describe('each lint rule catches its violation', () => {
  const lint = (dashboards: GrafanaDashboard[], gauges = OTEL_GAUGES) =>
    lintDashboards(
      dashboards.map((json, i): DashboardFile => ({ file: `fixture-${i}.json`, json })),
      { gauges },
    )

  it('the fixture passes', () => {
    expect(lint([goodDashboard()])).toEqual([])
  })

  it.each(VIOLATIONS)('%s: %s', (rule, _what, mutate) => {
    const dashboard = goodDashboard()
    mutate(dashboard)
    expect([...new Set(lint([dashboard]).map((finding) => finding.rule))]).toEqual([rule])
  })

  it('uid-rule: two dashboards with the same uid', () => {
    expect(lint([goodDashboard(), goodDashboard()]).map((f) => [f.rule, f.dashboard])).toEqual([['uid-rule', 'fixture']])
  })

  it('no-import-inputs-rule: a ${DS_…} placeholder is caught (and is not the datasource variable either)', () => {
    const dashboard = goodDashboard()
    panelOf(dashboard, 2).datasource = { type: 'prometheus', uid: '${DS_PROMETHEUS}' }
    expect(new Set(lint([dashboard]).map((f) => f.rule))).toEqual(new Set(['no-import-inputs-rule', 'panel-datasource-rule']))
  })

  it('target-counter-agg-rule: db_client_connection_count passes only because the registry says it is a gauge', () => {
    expect(lint([goodDashboard()], new Set()).map((f) => [f.rule, f.panel])).toEqual([['target-counter-agg-rule', 'Pool']])
  })

  it('every rule has at least one fixture that trips it', () => {
    expect(new Set(VIOLATIONS.map(([rule]) => rule))).toEqual(new Set(LINT_RULES))
  })
})

describe('the PromQL parser the lint stands on', () => {
  it('parses every panel query and alert rule', () => {
    for (const { expr } of [...panelTargets(files), ...alertExpressions()]) expect(() => parsePromQL(expr), expr).not.toThrow()
  })

  it('finds the metric names of the shapes dashboards and alerts use', () => {
    expect(metricNames('sum without (group) (warden_sessions_orphaned) > 5')).toEqual(['warden_sessions_orphaned'])
    expect(metricNames('sum without (state, application_name) (a) / on (instance, job) b > 0.9')).toEqual(['a', 'b'])
    expect(metricNames('(time() - x_seconds) > 900')).toEqual(['x_seconds'])
    expect(metricNames('label_replace(sum by (e) (rate(c_count{e!=""}[5m])), "e", "ok", "e", "")')).toEqual(['c_count'])
    expect(metricNames('max(a) or on () vector(0)')).toEqual(['a'])
    expect(metricNames('a / ignoring (e) group_left sum by (m) (b)')).toEqual(['a', 'b'])
    expect(metricNames('{__name__="a", job="x"} offset 5m')).toEqual(['a'])
    expect(metricNames('-x ^ 2 + max_over_time(y[1h:5m])')).toEqual(['x', 'y'])
  })

  it('reads Grafana variables where Grafana substitutes them, and ranges as written', () => {
    expect(parsePromQL('sum(rate(a_total{job=~"$job"}[$__rate_interval]))')).toEqual({
      selectors: [{ name: 'a_total', matchers: [{ name: 'job', op: '=~', value: '$job' }], rangeOf: 'rate' }],
      rangeCalls: [{ func: 'rate', range: '$__rate_interval' }],
    })
    expect(parsePromQL('increase(a[${__rate_interval}]) offset $shift').rangeCalls).toEqual([
      { func: 'increase', range: '${__rate_interval}' },
    ])
    expect(parsePromQL('max_over_time(rate(a[5m])[1h:$step])').rangeCalls).toEqual([
      { func: 'max_over_time', range: '1h' },
      { func: 'rate', range: '5m' },
    ])
    expect(metricNames('{"a.b", job="x"} + c{"d.e"="f"}')).toEqual(['a.b', 'c'])
  })

  it('rejects what Prometheus rejects', () => {
    for (const bad of ['sum(', 'a{b=}', 'rate(a[5m)', 'a b', 'sum by (le (a)', '"unterminated', '(a + b)[5m]', 'rate(a[$__rate_interval)'])
      expect(() => parsePromQL(bad), bad).toThrow()
  })
})

describe("the generated dashboards are typed against Grafana's schema (@grafana/schema)", () => {
  // The model as `npm run typecheck` sees it, with one probe file added in memory.
  const configFile = ts.readConfigFile(join(ROOT, 'tsconfig.check.json'), (path) => ts.sys.readFile(path))
  const { options } = ts.parseJsonConfigFileContent(configFile.config, ts.sys, ROOT)
  const probe = join(ROOT, 'src', 'grafana', 'schema-probe.ts')

  function typeErrors(source: string): string[] {
    const host = ts.createCompilerHost(options)
    const getSourceFile = host.getSourceFile.bind(host)
    host.getSourceFile = (name, language, ...rest) =>
      name === probe ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest)
    const fileExists = host.fileExists.bind(host)
    host.fileExists = (name) => name === probe || fileExists(name)
    const program = ts.createProgram([probe], options, host)
    return ts.getPreEmitDiagnostics(program, program.getSourceFile(probe)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '))
  }

  const header = `import { stat, timeseries, type Dashboard, type TimeseriesPanel, type Variable } from './model.js'
import { sessionsDashboard } from './dashboards/sessions.js'
const spec = { title: 't', description: 'd', unit: 's', queries: [{ expr: 'up' }] }
`

  it('what the builders make, and the fields Grafana knows, type-check', () => {
    const source = `${header}
export const d: Dashboard = { ...sessionsDashboard(), refresh: '1m' }
export const p = [timeseries({ ...spec, stack: true }), stat(spec)]
export const custom: TimeseriesPanel['fieldConfig']['defaults']['custom'] = { drawStyle: 'bars', lineWidth: 2 }
export const v: Variable = { name: 'x', type: 'query', query: 'label_values(up, x)', allValue: '.+' }
`
    expect(typeErrors(source)).toEqual([])
  }, 60_000)

  it('a field or a value Grafana does not know fails the type check, naming it', () => {
    const cases = {
      dashboard: "export const d: Dashboard = { ...sessionsDashboard(), refreshEvery: '1m' }",
      'panel field config': "export const c: TimeseriesPanel['fieldConfig']['defaults']['custom'] = { drawStyle: 'line', lineWidht: 2 }",
      'panel enum value': "export const c: TimeseriesPanel['fieldConfig']['defaults']['custom'] = { drawStyle: 'lines' }",
      variable: "export const v: Variable = { name: 'x', type: 'query', query: 'q', allValues: '.+' }",
      'variable type': "export const v: Variable = { name: 'x', type: 'labels', query: 'q' }",
    }
    const errors = Object.fromEntries(Object.entries(cases).map(([what, line]) => [what, typeErrors(`${header}${line}\n`).join('\n')]))
    expect(errors.dashboard).toContain("'refreshEvery' does not exist")
    expect(errors['panel field config']).toContain("'lineWidht' does not exist")
    expect(errors['panel enum value']).toContain('"lines"')
    expect(errors.variable).toContain("'allValues' does not exist")
    expect(errors['variable type']).toContain('"labels"')
  }, 60_000)
})
