import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import Anthropic from '@anthropic-ai/sdk'
import { parse as parseYaml } from 'yaml'
import { startChatServer, type ChatServer } from '../../src/chat/server.js'
import { migrate } from '../../src/db/migrate.js'
import { startMockLlm, type MockLlmServer } from '../../src/llm/mock-server.js'
import { createRegistry } from '../../src/metrics/registry.js'
import { createInstrumentedPool, llmCall, poolScope, type PoolLogger } from '../../src/pool/instrumented-pool.js'
import { createLogger } from '../../src/server/logger.js'
import { startService, type Service } from '../../src/server/service.js'
import { ROOT } from './cli.js'
import type { TestDatabase } from './db.js'
import { GROUPS, seedConversationSessions } from './fixtures.js'
import { startPrometheus, type RunningPrometheus } from './prometheus.js'
import { serviceConfig } from './server.js'

/*
 * Helpers for the Grafana dashboards: the committed files, a PromQL parser (enough of the
 * grammar for dashboards and alert rules), the dashboard lint, and the live stack (Warden,
 * the chat path, LLM traffic and a real Prometheus) that test/grafana-live.test.ts and
 * scripts/render-dashboards.ts share. Nothing here imports vitest, so the script can use it.
 */

export const DASHBOARDS_DIR = join(ROOT, 'grafana', 'dashboards')

export interface DashboardFile {
  file: string
  json: GrafanaDashboard
}

/** Only what the lint and the tests read; the files carry more. */
export interface GrafanaDashboard {
  uid?: unknown
  title?: unknown
  tags?: unknown
  __inputs?: unknown
  templating?: { list?: GrafanaVariable[] }
  panels?: GrafanaPanel[]
}

export interface GrafanaVariable {
  name?: string
  label?: string
  type?: string
  query?: unknown
  datasource?: { type?: string; uid?: string } | string | null
  multi?: boolean
  includeAll?: boolean
  allValue?: string | null
}

export interface GrafanaTarget {
  refId?: string
  expr?: string
  legendFormat?: string
  datasource?: { type?: string; uid?: string } | string | null
}

export interface GrafanaPanel {
  id?: number
  type?: string
  title?: string
  description?: string
  datasource?: { type?: string; uid?: string } | string | null
  targets?: GrafanaTarget[]
  fieldConfig?: { defaults?: { unit?: string } }
  gridPos?: { x: number; y: number; w: number; h: number }
  interval?: string
  timeFrom?: string
  panels?: GrafanaPanel[]
}

/** The committed dashboards, as Grafana reads them. */
export function loadDashboardFiles(dir = DASHBOARDS_DIR): DashboardFile[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(dir, file), 'utf8')) as GrafanaDashboard }))
}

/** Panels that show data, rows flattened (a collapsed row keeps its panels inside it). */
export function dataPanels(dashboard: GrafanaDashboard): GrafanaPanel[] {
  return (dashboard.panels ?? []).flatMap((panel) => (panel.type === 'row' ? (panel.panels ?? []) : [panel]))
}

export interface PanelTarget {
  dashboard: string
  panel: string
  refId: string
  expr: string
}

export function panelTargets(files: DashboardFile[]): PanelTarget[] {
  return files.flatMap(({ json }) =>
    dataPanels(json).flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({
        dashboard: String(json.uid),
        panel: String(panel.title),
        refId: String(target.refId),
        expr: String(target.expr ?? ''),
      })),
    ),
  )
}

/** Every `expr` of prometheus/alerts.yml, by alert name. */
export function alertExpressions(path = join(ROOT, 'prometheus', 'alerts.yml')): Array<{ alert: string; expr: string }> {
  const doc = parseYaml(readFileSync(path, 'utf8')) as {
    groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }>
  }
  return doc.groups.flatMap((group) => group.rules.map((rule) => ({ alert: rule.alert ?? rule.record ?? '?', expr: String(rule.expr) })))
}

// ---------------------------------------------------------------------------------------------
// PromQL
// ---------------------------------------------------------------------------------------------

export interface Matcher {
  name: string
  op: '=' | '!=' | '=~' | '!~'
  value: string
}

export type PromNode =
  | { kind: 'number'; text: string }
  | { kind: 'string'; value: string }
  /** a dashboard variable where an expression goes ($var) */
  | { kind: 'variable'; name: string }
  | { kind: 'selector'; name: string | undefined; matchers: Matcher[] }
  | { kind: 'matrix'; expr: PromNode; range: string }
  | { kind: 'subquery'; expr: PromNode; range: string; step: string }
  | { kind: 'call'; func: string; args: PromNode[] }
  | { kind: 'aggregate'; op: string; grouping: { without: boolean; labels: string[] } | undefined; args: PromNode[] }
  | {
      kind: 'binary'
      op: string
      lhs: PromNode
      rhs: PromNode
      bool: boolean
      on: string[] | undefined
      ignoring: string[] | undefined
      group: 'left' | 'right' | undefined
    }
  | { kind: 'unary'; op: string; expr: PromNode }
  | { kind: 'paren'; expr: PromNode }
  | { kind: 'offset'; expr: PromNode; offset: string }

export class PromQLSyntaxError extends Error {
  constructor(
    message: string,
    readonly expr: string,
    readonly position: number,
  ) {
    super(`${message} at ${position}: ${expr.slice(0, position)}⟨here⟩${expr.slice(position)}`)
    this.name = 'PromQLSyntaxError'
  }
}

const AGGREGATIONS = new Set([
  'sum',
  'avg',
  'count',
  'min',
  'max',
  'group',
  'stddev',
  'stdvar',
  'topk',
  'bottomk',
  'quantile',
  'count_values',
  'limitk',
  'limit_ratio',
])
/** Binary operators from the loosest to the tightest binding. `^` (right-associative) is handled apart. */
const PRECEDENCE: string[][] = [['or'], ['and', 'unless'], ['==', '!=', '<=', '<', '>=', '>'], ['+', '-'], ['*', '/', '%', 'atan2']]
const COMPARISONS = new Set(['==', '!=', '<=', '<', '>=', '>'])
const WORD_OPERATORS = new Set(['or', 'and', 'unless', 'atan2'])
const METRIC_NAME = /[A-Za-z_:][A-Za-z0-9_:]*/y
const LABEL_NAME = /[A-Za-z_][A-Za-z0-9_]*/y
const NUMBER = /(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z_])/y
const DURATION = /(?:\d+(?:ms|[smhdwy]))+|\$\{?\w+\}?/y
const VARIABLE = /\$(?:\{(\w+)(?::\w+)?\}|(\w+))/y

/**
 * A recursive-descent parser for the PromQL that dashboards and alert rules use: selectors with
 * matchers, range and subquery selectors, offset, functions, aggregations with by/without on
 * either side, binary operators with bool/on/ignoring/group_left/group_right, and Grafana
 * variables in durations ($__rate_interval) and in expression position.
 */
export function parsePromQL(expr: string): PromNode {
  let pos = 0

  const fail = (message: string): never => {
    throw new PromQLSyntaxError(message, expr, pos)
  }
  const skip = () => {
    for (;;) {
      while (pos < expr.length && /\s/.test(expr[pos]!)) pos += 1
      if (expr[pos] !== '#') return
      while (pos < expr.length && expr[pos] !== '\n') pos += 1
    }
  }
  const match = (re: RegExp): string | undefined => {
    skip()
    re.lastIndex = pos
    const found = re.exec(expr)
    if (!found) return undefined
    pos = re.lastIndex
    return found[0]
  }
  const peekWord = (): string | undefined => {
    skip()
    METRIC_NAME.lastIndex = pos
    return METRIC_NAME.exec(expr)?.[0]
  }
  const eatWord = (word: string): boolean => {
    if (peekWord() !== word) return false
    pos += word.length
    return true
  }
  const eat = (token: string): boolean => {
    skip()
    if (!expr.startsWith(token, pos)) return false
    pos += token.length
    return true
  }
  const expect = (token: string) => {
    if (!eat(token)) fail(`expected "${token}"`)
  }

  const string = (): string | undefined => {
    skip()
    const quote = expr[pos]
    if (quote !== '"' && quote !== "'" && quote !== '`') return undefined
    let value = ''
    pos += 1
    while (pos < expr.length && expr[pos] !== quote) {
      if (expr[pos] === '\\' && quote !== '`') {
        const next = expr[pos + 1] ?? ''
        value += next === 'n' ? '\n' : next === 't' ? '\t' : next
        pos += 2
      } else {
        value += expr[pos]
        pos += 1
      }
    }
    if (pos >= expr.length) fail('unterminated string')
    pos += 1
    return value
  }

  const labelList = (): string[] => {
    expect('(')
    const labels: string[] = []
    while (!eat(')')) {
      labels.push(match(LABEL_NAME) ?? fail('expected a label name'))
      if (!eat(',')) {
        expect(')')
        break
      }
    }
    return labels
  }

  const matchers = (): Matcher[] => {
    const list: Matcher[] = []
    while (!eat('}')) {
      const name = match(LABEL_NAME) ?? fail('expected a label name')
      skip()
      const op =
        (['=~', '!~', '!=', '='] as const).find((candidate) => expr.startsWith(candidate, pos)) ?? fail('expected a matcher operator')
      pos += op.length
      const value = string() ?? fail('expected a quoted label value')
      list.push({ name, op, value })
      if (!eat(',')) {
        expect('}')
        break
      }
    }
    return list
  }

  const args = (): PromNode[] => {
    expect('(')
    const list: PromNode[] = []
    while (!eat(')')) {
      list.push(expression(0))
      if (!eat(',')) {
        expect(')')
        break
      }
    }
    return list
  }

  const grouping = () => {
    for (const keyword of ['by', 'without']) {
      if (eatWord(keyword)) return { without: keyword === 'without', labels: labelList() }
    }
    return undefined
  }

  const primary = (): PromNode => {
    skip()
    if (eat('(')) {
      const inner = expression(0)
      expect(')')
      return { kind: 'paren', expr: inner }
    }
    const quoted = string()
    if (quoted !== undefined) return { kind: 'string', value: quoted }
    const number = match(NUMBER)
    if (number !== undefined) return { kind: 'number', text: number }
    if (eat('{')) {
      const list = matchers()
      const name = list.find((m) => m.name === '__name__' && m.op === '=')?.value
      return { kind: 'selector', name, matchers: list }
    }
    VARIABLE.lastIndex = pos
    const variable = VARIABLE.exec(expr)
    if (variable) {
      pos = VARIABLE.lastIndex
      return { kind: 'variable', name: variable[1] ?? variable[2]! }
    }
    const word = match(METRIC_NAME) ?? fail('expected an expression')
    if (AGGREGATIONS.has(word)) {
      const before = grouping()
      skip()
      if (before || expr[pos] === '(') {
        const list = args()
        const after = before ?? grouping()
        return { kind: 'aggregate', op: word, grouping: after, args: list }
      }
    }
    skip()
    if (expr[pos] === '(') return { kind: 'call', func: word, args: args() }
    if (/^(inf|nan)$/i.test(word)) return { kind: 'number', text: word }
    skip()
    const list = expr[pos] === '{' ? (pos++, matchers()) : []
    return { kind: 'selector', name: word, matchers: list }
  }

  const postfix = (): PromNode => {
    let node = primary()
    for (;;) {
      if (eat('[')) {
        const range = match(DURATION) ?? fail('expected a duration')
        if (eat(':')) {
          const step = match(DURATION) ?? ''
          expect(']')
          node = { kind: 'subquery', expr: node, range, step }
        } else {
          expect(']')
          if (node.kind !== 'selector') fail('a range needs a vector selector (or write a subquery [range:step])')
          node = { kind: 'matrix', expr: node, range }
        }
      } else if (eatWord('offset')) {
        eat('-')
        node = { kind: 'offset', expr: node, offset: match(DURATION) ?? fail('expected an offset duration') }
      } else {
        return node
      }
    }
  }

  const unary = (): PromNode => {
    skip()
    if (expr[pos] === '-' || expr[pos] === '+') {
      const op = expr[pos]!
      pos += 1
      return { kind: 'unary', op, expr: unary() }
    }
    const base = postfix()
    // `^` is right-associative and binds tighter than unary minus on its left
    if (eat('^'))
      return { kind: 'binary', op: '^', lhs: base, rhs: unary(), bool: false, on: undefined, ignoring: undefined, group: undefined }
    return base
  }

  const operatorAt = (level: number): string | undefined => {
    skip()
    for (const op of PRECEDENCE[level]!) {
      if (WORD_OPERATORS.has(op)) {
        if (peekWord() === op) return op
      } else if (expr.startsWith(op, pos) && !(op === '<' && expr.startsWith('<=', pos)) && !(op === '>' && expr.startsWith('>=', pos))) {
        // `=~`/`!~` only occur inside braces, so `==`/`!=` here are operators
        return op
      }
    }
    return undefined
  }

  function expression(level: number): PromNode {
    if (level >= PRECEDENCE.length) return unary()
    let lhs = expression(level + 1)
    for (;;) {
      const op = operatorAt(level)
      if (op === undefined) return lhs
      pos += op.length
      const bool = COMPARISONS.has(op) && eatWord('bool')
      let on: string[] | undefined
      let ignoring: string[] | undefined
      let group: 'left' | 'right' | undefined
      if (eatWord('on')) on = labelList()
      else if (eatWord('ignoring')) ignoring = labelList()
      if (on || ignoring) {
        for (const side of ['left', 'right'] as const) {
          if (eatWord(`group_${side}`)) {
            group = side
            skip()
            if (expr[pos] === '(') labelList()
          }
        }
      }
      const rhs = expression(level + 1)
      lhs = { kind: 'binary', op, lhs, rhs, bool, on, ignoring, group }
    }
  }

  const root = expression(0)
  skip()
  if (pos < expr.length) fail('unexpected input')
  return root
}

function children(node: PromNode): PromNode[] {
  switch (node.kind) {
    case 'matrix':
    case 'subquery':
    case 'unary':
    case 'paren':
    case 'offset':
      return [node.expr]
    case 'call':
    case 'aggregate':
      return node.args
    case 'binary':
      return [node.lhs, node.rhs]
    default:
      return []
  }
}

/** Depth-first, with the chain of ancestors (closest last), like the Prometheus parser's Walk. */
export function walk(node: PromNode, visit: (node: PromNode, parents: PromNode[]) => void, parents: PromNode[] = []): void {
  visit(node, parents)
  for (const child of children(node)) walk(child, visit, [...parents, node])
}

export function selectors(node: PromNode): Array<Extract<PromNode, { kind: 'selector' }>> {
  const found: Array<Extract<PromNode, { kind: 'selector' }>> = []
  walk(node, (n) => {
    if (n.kind === 'selector') found.push(n)
  })
  return found
}

/** The metric names an expression reads (series names, e.g. `x_bucket`, as written). */
export function metricNames(expr: string): string[] {
  return [...new Set(selectors(parsePromQL(expr)).flatMap((s) => (s.name ? [s.name] : [])))]
}

/** `$var` and `${var}` replaced outside and inside strings: what Grafana sends to Prometheus. */
export function expandVariables(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!
    if (!(name in values)) throw new Error(`no value for the dashboard variable $${name} in ${expr}`)
    return values[name]!
  })
}

/** A label value as a regex that matches only itself, escaped for a PromQL double-quoted string. */
export const regexLiteral = (value: string): string => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\/g, '\\\\')

// ---------------------------------------------------------------------------------------------
// Lint
// ---------------------------------------------------------------------------------------------

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
  'panel-datasource-rule',
  'panel-units-rule',
  'panel-title-description-rule',
  'panel-targets-rule',
  'target-promql-rule',
  'target-rate-interval-rule',
  'target-counter-agg-rule',
  'target-job-rule',
  'target-instance-rule',
] as const
export type LintRule = (typeof LINT_RULES)[number]

/**
 * The rules of Grafana's dashboard-linter that matter for file-provisioned Prometheus
 * dashboards, plus uid, tags and no-import-inputs. Stricter than the linter where Warden wants
 * it: units, titles and descriptions on every panel type, job/instance variables must be
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

    for (const panel of d.panels ?? []) {
      if (panel.type === 'row') {
        if (!panel.title) add('panel-title-description-rule', 'a row has no title', panel)
        if (panel.targets?.length) add('panel-targets-rule', 'a row has targets of its own', panel)
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
      if (targets.length === 0) add('panel-targets-rule', 'has no targets', panel)

      for (const target of targets) {
        const refId = String(target.refId ?? '?')
        const addT = (rule: LintRule, message: string) => add(rule, message, panel, refId)
        if (!TEMPLATED_DATASOURCE.has(datasourceUid(target.datasource) ?? ''))
          addT('panel-datasource-rule', `target datasource is ${JSON.stringify(datasourceUid(target.datasource))}, expected \${datasource}`)
        if (!target.expr?.trim()) {
          addT('panel-targets-rule', 'target has no expr')
          continue
        }
        let root: PromNode
        try {
          root = parsePromQL(target.expr)
        } catch (error) {
          addT('target-promql-rule', (error as Error).message)
          continue
        }
        walk(root, (node, parents) => {
          const parent = parents.at(-1)
          if (node.kind === 'call' && COUNTER_FUNCTIONS.has(node.func)) {
            const range = node.args.find((arg) => arg.kind === 'matrix' || arg.kind === 'subquery')
            if (range && !RATE_INTERVAL.has(range.range))
              addT('target-rate-interval-rule', `${node.func}() over [${range.range}]; use [$__rate_interval]: ${target.expr}`)
          }
          if (node.kind !== 'selector') return
          const name = node.name ?? ''
          if (COUNTER_SUFFIX.test(name) && !gauges.has(name)) {
            const call = parents.at(-2)
            const aggregated = parent?.kind === 'matrix' && call?.kind === 'call' && COUNTER_FUNCTIONS.has(call.func)
            if (!aggregated) addT('target-counter-agg-rule', `counter series ${name} is read without rate(), irate() or increase()`)
          }
          for (const [label, rule] of [
            ['job', 'target-job-rule'],
            ['instance', 'target-instance-rule'],
          ] as const) {
            const matcher = node.matchers.find((m) => m.name === label)
            if (!matcher) addT(rule, `${name || 'a selector'} has no ${label} matcher; expected ${label}=~"$${label}"`)
            else if (matcher.op !== '=~' || matcher.value !== `$${label}`)
              addT(rule, `${name || 'a selector'} has ${label}${matcher.op}"${matcher.value}"; expected ${label}=~"$${label}"`)
          }
        })
      }
    }
  }
  return findings
}

/** The label_values(<selector>, <label>) of a query variable, for checking it against a real Prometheus. */
export function labelValuesQuery(variable: GrafanaVariable): { selector: string; label: string } | undefined {
  const query = typeof variable.query === 'string' ? variable.query : ((variable.query as { query?: string } | undefined)?.query ?? '')
  const found = /^label_values\((.+),\s*(\w+)\s*\)$/s.exec(query.trim())
  return found ? { selector: found[1]!.trim(), label: found[2]! } : undefined
}

// ---------------------------------------------------------------------------------------------
// The live stack
// ---------------------------------------------------------------------------------------------

export interface LiveStackOptions {
  /** one chat server per model, all publishing into the service's registry (default two) */
  models?: string[]
  /** concurrent chat clients per chat server (default 2) */
  workersPerChat?: number
  /** the scheduled sweep (6-field cron, default every 2 s); slower lets orphans pile up between sweeps */
  sweepSchedule?: string
}

export interface TrafficStats {
  turns: number
  /** chat turns answered with an error, by HTTP status */
  errors: Record<string, number>
  /** streams the client dropped mid-way (closed by the chat path as 'disconnect') */
  disconnects: number
  /** LLM calls the leaky app made while holding a connection */
  heldCalls: number
  /** connect() calls of the leaky app that timed out */
  poolTimeouts: number
  /** orphans inserted while running */
  orphansAdded: number
  /** unexpected failures of the traffic loops (network, bugs), with the last message */
  failures: number
  lastFailure?: string
}

export interface LiveStack {
  service: Service
  prometheus: RunningPrometheus
  mock: MockLlmServer
  chats: ChatServer[]
  /** the job and instance labels Prometheus gives the service's series */
  job: string
  instance: string
  traffic: TrafficStats
  /** the service's warnings and errors, parsed */
  logs: Array<Record<string, unknown>>
  stop: () => Promise<void>
}

/** The application_name of the app that holds a transaction across its LLM calls. */
export const LEAKY_APP = 'leaky-app'

async function postJson(url: string, body: unknown): Promise<{ status: number; body: { session?: { id: string } } }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: response.status, body: (await response.json().catch(() => ({}))) as { session?: { id: string } } }
}

/** One chat client: sessions of a few turns, some with parallel tool calls, some streams dropped mid-way. */
async function chatClient(chatUrl: string, worker: number, running: () => boolean, traffic: TrafficStats): Promise<void> {
  let session: string | undefined
  let turnsInSession = 0
  while (running()) {
    try {
      if (session === undefined) {
        const created = await postJson(`${chatUrl}/sessions`, { agentRole: GROUPS[worker % GROUPS.length] })
        session = created.body.session?.id
        turnsInSession = 0
        if (session === undefined) throw new Error(`POST /sessions answered ${created.status}`)
      }
      const turn = traffic.turns++
      const path = `${chatUrl}/sessions/${encodeURIComponent(session)}/messages`
      if (turn % 11 === 5) {
        // A client that goes away mid-stream: the chat path closes the session (reason disconnect).
        const controller = new AbortController()
        const response = await fetch(`${path}/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message: 'tell me a long story' }),
          signal: controller.signal,
        })
        if (response.headers.get('content-type')?.startsWith('text/event-stream')) {
          controller.abort()
          traffic.disconnects += 1
          session = undefined
        } else {
          await response.body?.cancel()
        }
        continue
      }
      const message = turn % 5 === 0 ? '[tools:2] look up the order and the invoice' : 'hello, how is my order doing?'
      const reply = await postJson(path, { message })
      if (reply.status !== 200) {
        traffic.errors[reply.status] = (traffic.errors[reply.status] ?? 0) + 1
        if (reply.status === 404 || reply.status === 409) session = undefined
      } else if (++turnsInSession >= 4) {
        await postJson(`${chatUrl}/sessions/${encodeURIComponent(session)}/end`, {})
        session = undefined
      }
    } catch (error) {
      if (!running()) return
      traffic.failures += 1
      traffic.lastFailure = (error as Error).message
      session = undefined
      await sleep(100)
    }
  }
}

const quietPoolLogger: PoolLogger = { warn: () => undefined }

/**
 * The anti-pattern the dashboards exist to show: an app with a one-connection pool that opens a
 * transaction and keeps it open while it calls the LLM (llmCall counts each call), and whose
 * other requests then time out waiting for that connection. pg_stat_activity shows it
 * "idle in transaction" for as long as it runs.
 */
async function leakyApp(
  databaseUrl: string,
  mockUrl: string,
  registry: ReturnType<typeof createRegistry>,
  running: () => boolean,
  traffic: TrafficStats,
  started: (ok: boolean) => void,
): Promise<void> {
  const pool = createInstrumentedPool(
    { connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 300, application_name: LEAKY_APP },
    { poolName: 'leaky', registry, logger: quietPoolLogger },
  )
  pool.on('error', () => undefined)
  const anthropic = new Anthropic({ baseURL: mockUrl, apiKey: 'test-key', maxRetries: 0 })
  try {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT 1')
      started(true)
      while (running()) {
        await llmCall('summarise', () =>
          anthropic.messages.create({
            model: 'claude-mock-leaky',
            max_tokens: 16,
            messages: [{ role: 'user', content: 'summarise the session' }],
          }),
        ).catch(() => undefined)
        traffic.heldCalls += 1
        try {
          ;(await pool.connect()).release()
        } catch {
          traffic.poolTimeouts += 1
        }
        await sleep(400)
      }
      await client.query('ROLLBACK').catch(() => undefined)
    } finally {
      client.release()
    }
  } catch (error) {
    traffic.failures += 1
    traffic.lastFailure = `leaky app: ${(error as Error).message}`
    started(false)
  } finally {
    await pool.end().catch(() => undefined)
  }
}

/**
 * Everything the dashboards read, for real: a seeded session table with orphans, `warden serve`
 * (startService) with the scheduler sweeping and applying every 2 s and doctor every 2 s, chat
 * servers (the reference chat path, through @anthropic-ai/sdk) sharing the service's registry
 * against the mock LLM with faults, a leaky app holding a transaction across LLM calls, new
 * orphans arriving, and a real Prometheus scraping the service every second.
 */
export async function startLiveStack(t: TestDatabase, options: LiveStackOptions = {}): Promise<LiveStack> {
  const traffic: TrafficStats = { turns: 0, errors: {}, disconnects: 0, heldCalls: 0, poolTimeouts: 0, orphansAdded: 0, failures: 0 }
  const logs: Array<Record<string, unknown>> = []
  const stops: Array<() => Promise<unknown>> = []
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined)
  }
  let running = true
  const isRunning = () => running
  try {
    await seedConversationSessions(t, { orphans: 30, live: 24, closed: 12 })
    await migrate(t.db, 'warden')

    // Fault rates high enough that every error panel has data within seconds, low enough that most turns succeed.
    const mock = await startMockLlm({
      latencyMs: { median: 150, p99: 900 },
      faults: { rate429: 0.06, rate500: 0.05, rate529: 0.04 },
      seed: 11,
    })
    stops.push(() => mock.close())

    const registry = createRegistry()
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    const config = serviceConfig(t.url, {
      server: { collectInterval: '1s', collectTimeout: '2s' },
      extra: `scheduler:\n  sweep: "${options.sweepSchedule ?? '*/2 * * * * *'}"\n  sweepApply: true\n  doctor: "*/2 * * * * *"\n`,
    })
    const service = await startService({
      config,
      logger: createLogger({ level: 'warn', format: 'json', destination }),
      registry,
      scheduler: true,
    })
    stops.push(() => service.close(5_000))

    const chats: ChatServer[] = []
    for (const [i, model] of (options.models ?? ['claude-mock-sonnet', 'claude-mock-haiku']).entries()) {
      const chat = await startChatServer({
        databaseUrl: t.url,
        llm: { baseURL: mock.url, apiKey: 'test-key', maxRetries: 0, timeoutMs: 10_000 },
        model,
        registry,
        poolMax: 3,
        poolName: `chat_${i + 1}`,
        applicationName: `warden-chat-${i + 1}`,
        llmTimeoutMs: 10_000,
      })
      chats.push(chat)
      stops.push(() => chat.close({ graceMs: 0 }))
    }

    const loops: Array<Promise<void>> = []
    stops.push(async () => {
      running = false
      await Promise.all(loops)
    })
    for (const chat of chats) {
      for (let w = 0; w < (options.workersPerChat ?? 2); w += 1) loops.push(chatClient(chat.chatUrl, w, isRunning, traffic))
    }
    const leakyStarted = new Promise<boolean>((resolve) =>
      loops.push(poolScope(() => leakyApp(t.url, mock.url, registry, isRunning, traffic, resolve))),
    )
    if (!(await leakyStarted)) throw new Error(`the leaky app could not start: ${traffic.lastFailure}`)
    loops.push(
      (async () => {
        // New orphans keep arriving, so sweeps keep closing some and the orphan gauges move.
        while (running) {
          await sleep(1500)
          if (!running) return
          await t
            .exec(
              `INSERT INTO conversation_sessions (session_id, user_id, agent_role, is_active, session_start, last_activity_at)
               SELECT gen_random_uuid(), 'late', ($1::text[])[1 + (random() * 2)::int], true, now() - interval '6 hours', now() - interval '3 hours' FROM generate_series(1, 2)`,
              [GROUPS],
            )
            .then(() => (traffic.orphansAdded += 2))
            .catch(() => undefined)
        }
      })(),
    )

    const instance = new URL(service.url).host
    const prometheus = await startPrometheus([instance])
    stops.push(() => prometheus.stop())
    return { service, prometheus, mock, chats, job: 'warden', instance, traffic, logs, stop: stopAll }
  } catch (error) {
    running = false
    await stopAll()
    throw error
  }
}

/** Grafana's values for one instance of the live stack: every other variable as "All" (.+). */
export function liveVariables(stack: Pick<LiveStack, 'job' | 'instance'>, rateInterval: string): Record<string, string> {
  return {
    job: regexLiteral(stack.job),
    instance: regexLiteral(stack.instance),
    pool: '.+',
    model: '.+',
    __rate_interval: rateInterval,
    datasource: 'unused',
  }
}

export interface RangeSeries {
  metric: Record<string, string>
  values: Array<[number, number]>
}

/** /api/v1/query_range: a matrix, values as numbers (NaN kept). */
export async function queryRange(
  prometheusUrl: string,
  expr: string,
  start: number,
  end: number,
  stepSeconds: number,
): Promise<RangeSeries[]> {
  const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(stepSeconds) })
  const response = await fetch(`${prometheusUrl}/api/v1/query_range`, { method: 'POST', body: params })
  const body = (await response.json()) as {
    status: string
    error?: string
    data?: { result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> }
  }
  if (body.status !== 'success') throw new Error(`query_range ${expr} failed: ${body.error}`)
  return body.data!.result.map((series) => ({
    metric: series.metric,
    values: series.values.map(([time, value]) => [time, Number(value)] as [number, number]),
  }))
}

/** /api/v1/label/<label>/values restricted to a selector: what a label_values() variable offers. */
export async function labelValues(prometheusUrl: string, label: string, selector: string): Promise<string[]> {
  const response = await fetch(
    `${prometheusUrl}/api/v1/label/${encodeURIComponent(label)}/values?${new URLSearchParams({ 'match[]': selector })}`,
  )
  const body = (await response.json()) as { status: string; error?: string; data?: string[] }
  if (body.status !== 'success') throw new Error(`label values of ${label} for ${selector} failed: ${body.error}`)
  return body.data!
}
