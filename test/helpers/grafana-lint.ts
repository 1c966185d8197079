import { dataPanels, labelValuesQuery, type DashboardFile, type GrafanaPanel } from './grafana-files.js'
import { parsePromQL, type PromQL } from './grafana-promql.js'

export interface LintFinding {
  rule: string
  dashboard: string
  panel?: string
  refId?: string
  message: string
}

export interface LintOptions {
  /**
   * Series whose names end like a counter's but are gauges: db_client_connection_count is
   * OpenTelemetry's name for a gauge. Pass the registry's gauge names.
   */
  gauges?: ReadonlySet<string>
}

/**
 * Grafana unit ids a panel may use (Grafana's valueFormats: misc, time, throughput, data,
 * date, boolean). An id Grafana does not know renders as a bare number with the id as a suffix.
 */
export const GRAFANA_UNITS = new Set([
  'none',
  'short',
  'string',
  'percent',
  'percentunit',
  'locale',
  'sci',
  'hex',
  'hex0x',
  'ns',
  'µs',
  'ms',
  's',
  'm',
  'h',
  'd',
  'dtdurationms',
  'dtdurations',
  'dthms',
  'dtdhms',
  'timeticks',
  'clockms',
  'clocks',
  'hertz',
  'cps',
  'ops',
  'reqps',
  'rps',
  'wps',
  'iops',
  'cpm',
  'opm',
  'rpm',
  'wpm',
  'bytes',
  'decbytes',
  'bits',
  'decbits',
  'kbytes',
  'deckbytes',
  'mbytes',
  'decmbytes',
  'gbytes',
  'decgbytes',
  'Bps',
  'bps',
  'binBps',
  'binbps',
  'dateTimeAsIso',
  'dateTimeAsIsoNoDateIfToday',
  'dateTimeAsUS',
  'dateTimeAsUSNoDateIfToday',
  'dateTimeAsLocal',
  'dateTimeAsLocalNoDateIfToday',
  'dateTimeAsSystem',
  'dateTimeFromNow',
  'bool',
  'bool_yes_no',
  'bool_on_off',
  'currencyUSD',
  'currencyEUR',
])

const TEMPLATED_DATASOURCE = new Set(['$datasource', '${datasource}'])
const RATE_INTERVAL = new Set(['$__rate_interval', '${__rate_interval}'])
const COUNTER_FUNCTIONS = new Set(['rate', 'irate', 'increase'])
const COUNTER_SUFFIX = /_(total|bucket|count|sum)$/

const datasourceUid = (ds: GrafanaPanel['datasource']): string | undefined => (typeof ds === 'string' ? ds : (ds?.uid ?? undefined))

export const LINT_RULES = [
  'uid-rule',
  'dashboard-tags-rule',
  'no-import-inputs-rule',
  'template-datasource-rule',
  'template-job-rule',
  'template-instance-rule',
  'template-label-promql-rule',
  'template-on-time-change-reload-rule',
  'panel-datasource-rule',
  'panel-units-rule',
  'panel-title-description-rule',
  'panel-no-targets-rule',
  'target-promql-rule',
  'target-rate-interval-rule',
  'target-counter-agg-rule',
  'target-job-rule',
  'target-instance-rule',
] as const
export type LintRule = (typeof LINT_RULES)[number]

/**
 * The 14 rules of grafana/dashboard-linter's default rule set, under its rule names, plus
 * Warden's uid, tags and no-import-inputs rules. Stricter than the linter where Warden wants it:
 * units, titles and descriptions on every panel type, job/instance variables must be
 * multi-select with allValue ".+", and counters include histogram and summary series
 * (_bucket, _count, _sum) as well as _total.
 */
export function lintDashboards(files: DashboardFile[], options: LintOptions = {}): LintFinding[] {
  const findings: LintFinding[] = []
  const gauges = options.gauges ?? new Set<string>()
  const uids = new Map<string, string>()

  for (const { file, json: d } of files) {
    const dashboard = typeof d.uid === 'string' && d.uid ? d.uid : file
    const add = (rule: LintRule, message: string, panel?: GrafanaPanel, refId?: string) =>
      findings.push({
        rule,
        dashboard,
        ...(panel ? { panel: String(panel.title ?? `id ${panel.id}`) } : {}),
        ...(refId ? { refId } : {}),
        message,
      })

    // uid: Grafana keys provisioned dashboards and links by it; at most 40 characters
    if (typeof d.uid !== 'string' || !/^[A-Za-z0-9_-]{1,40}$/.test(d.uid))
      add('uid-rule', `uid ${JSON.stringify(d.uid)} is not a fixed uid of 1 to 40 letters, digits, _ or -`)
    else if (uids.has(d.uid)) add('uid-rule', `uid "${d.uid}" is also the uid of ${uids.get(d.uid)}`)
    else uids.set(d.uid, file)

    if (!Array.isArray(d.tags) || !d.tags.includes('warden')) add('dashboard-tags-rule', 'tags must include "warden"')

    // `${DS_…}` inputs are filled in by the import dialog only; a provisioned file keeps them literally
    const text = JSON.stringify(d)
    if (d.__inputs !== undefined || /\$\{DS_[A-Za-z0-9_]+\}/.test(text))
      add('no-import-inputs-rule', 'uses __inputs / ${DS_…} import placeholders, which file provisioning never fills in')

    const variables = d.templating?.list ?? []
    const datasources = variables.filter((v) => v.type === 'datasource')
    if (datasources.length !== 1) add('template-datasource-rule', `expected one datasource variable, found ${datasources.length}`)
    for (const v of datasources) {
      if (v.name !== 'datasource') add('template-datasource-rule', `the datasource variable is named "${v.name}", expected "datasource"`)
      if (v.label !== 'Data source')
        add('template-datasource-rule', `the datasource variable is labelled "${v.label}", expected "Data source"`)
      if (v.query !== 'prometheus')
        add('template-datasource-rule', `the datasource variable's query is ${JSON.stringify(v.query)}, expected "prometheus"`)
    }

    for (const [name, rule] of [
      ['job', 'template-job-rule'],
      ['instance', 'template-instance-rule'],
    ] as const) {
      const v = variables.find((candidate) => candidate.name === name)
      if (!v) {
        add(rule, `no "${name}" variable`)
        continue
      }
      const label = name[0]!.toUpperCase() + name.slice(1)
      if (v.type !== 'query') add(rule, `the ${name} variable is of type "${v.type}", expected "query"`)
      if (!TEMPLATED_DATASOURCE.has(datasourceUid(v.datasource) ?? ''))
        add(rule, `the ${name} variable queries datasource ${JSON.stringify(datasourceUid(v.datasource))}, expected \${datasource}`)
      if (v.label !== label) add(rule, `the ${name} variable is labelled "${v.label}", expected "${label}"`)
      if (v.multi !== true) add(rule, `the ${name} variable must be multi-select`)
      if (v.allValue !== '.+') add(rule, `the ${name} variable's allValue is ${JSON.stringify(v.allValue)}, expected ".+"`)
      const query = typeof v.query === 'string' ? v.query : ((v.query as { query?: string } | undefined)?.query ?? '')
      if (!/^label_values\(.+,\s*\w+\s*\)$/s.test(query) || !query.trimEnd().endsWith(`${name})`))
        add(rule, `the ${name} variable's query ${JSON.stringify(query)} is not label_values(<metric>, ${name})`)
    }

    for (const v of variables.filter((candidate) => candidate.type === 'query')) {
      const query = labelValuesQuery(v)
      if (!query)
        add(
          'template-label-promql-rule',
          `the ${v.name} variable's query ${JSON.stringify(v.query)} is not label_values(<selector>, <label>)`,
        )
      else {
        try {
          parsePromQL(query.selector)
        } catch (error) {
          add('template-label-promql-rule', `the ${v.name} variable's selector: ${(error as Error).message}`)
        }
      }
      // 1 would keep the values of the moment the dashboard opened: new replicas never appear
      if (v.refresh !== 2)
        add(
          'template-on-time-change-reload-rule',
          `the ${v.name} variable's refresh is ${JSON.stringify(v.refresh)}, expected 2 (on time range change)`,
        )
    }

    for (const panel of d.panels ?? []) {
      if (panel.type === 'row') {
        if (!panel.title) add('panel-title-description-rule', 'a row has no title', panel)
        if (panel.targets?.length) add('panel-no-targets-rule', 'a row has targets of its own', panel)
      }
    }

    for (const panel of dataPanels(d)) {
      if (!TEMPLATED_DATASOURCE.has(datasourceUid(panel.datasource) ?? ''))
        add(
          'panel-datasource-rule',
          `panel datasource is ${JSON.stringify(datasourceUid(panel.datasource))}, expected \${datasource}`,
          panel,
        )
      const unit = panel.fieldConfig?.defaults?.unit
      if (!unit || !GRAFANA_UNITS.has(unit))
        add('panel-units-rule', `fieldConfig.defaults.unit is ${JSON.stringify(unit)}, expected a Grafana unit id`, panel)
      if (!panel.title?.trim() || !panel.description?.trim()) add('panel-title-description-rule', 'needs a title and a description', panel)
      const targets = panel.targets ?? []
      if (targets.length === 0) add('panel-no-targets-rule', 'has no targets', panel)

      for (const target of targets) {
        const refId = String(target.refId ?? '?')
        const addT = (rule: LintRule, message: string) => add(rule, message, panel, refId)
        if (!TEMPLATED_DATASOURCE.has(datasourceUid(target.datasource) ?? ''))
          addT('panel-datasource-rule', `target datasource is ${JSON.stringify(datasourceUid(target.datasource))}, expected \${datasource}`)
        if (!target.expr?.trim()) {
          addT('panel-no-targets-rule', 'target has no expr')
          continue
        }
        let query: PromQL
        try {
          query = parsePromQL(target.expr)
        } catch (error) {
          addT('target-promql-rule', (error as Error).message)
          continue
        }
        for (const call of query.rangeCalls) {
          if (COUNTER_FUNCTIONS.has(call.func) && !RATE_INTERVAL.has(call.range))
            addT('target-rate-interval-rule', `${call.func}() over [${call.range}]; use [$__rate_interval]: ${target.expr}`)
        }
        for (const selector of query.selectors) {
          const name = selector.name ?? ''
          if (COUNTER_SUFFIX.test(name) && !gauges.has(name) && !COUNTER_FUNCTIONS.has(selector.rangeOf ?? ''))
            addT('target-counter-agg-rule', `counter series ${name} is read without rate(), irate() or increase()`)
          for (const [label, rule] of [
            ['job', 'target-job-rule'],
            ['instance', 'target-instance-rule'],
          ] as const) {
            const matcher = selector.matchers.find((m) => m.name === label)
            if (!matcher) addT(rule, `${name || 'a selector'} has no ${label} matcher; expected ${label}=~"$${label}"`)
            else if (matcher.op !== '=~' || matcher.value !== `$${label}`)
              addT(rule, `${name || 'a selector'} has ${label}${matcher.op}"${matcher.value}"; expected ${label}=~"$${label}"`)
          }
        }
      }
    }
  }
  return findings
}
