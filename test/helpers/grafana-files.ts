import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { ROOT } from './cli.js'

/*
 * The committed Grafana dashboards and alert rules as Grafana and Prometheus read them, and
 * Grafana's variable substitution. Nothing here imports vitest, so scripts can use it too.
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
  refresh?: number
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

/**
 * `$var` and `${var}` replaced outside and inside strings: what Grafana sends to Prometheus.
 * `$1` (label_replace()'s capture group) is left as it is: Grafana leaves a name it has no
 * variable for untouched, and no variable name starts with a digit.
 */
export function expandVariables(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!
    if (/^\d+$/.test(name)) return whole
    if (!(name in values)) throw new Error(`no value for the dashboard variable $${name} in ${expr}`)
    return values[name]!
  })
}

/** A label value as a regex that matches only itself, escaped for a PromQL double-quoted string. */
export const regexLiteral = (value: string): string => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\/g, '\\\\')

/** The label_values(<selector>, <label>) of a query variable, for checking it against a real Prometheus. */
export function labelValuesQuery(variable: GrafanaVariable): { selector: string; label: string } | undefined {
  const query = typeof variable.query === 'string' ? variable.query : ((variable.query as { query?: string } | undefined)?.query ?? '')
  const found = /^label_values\((.+),\s*(\w+)\s*\)$/s.exec(query.trim())
  return found ? { selector: found[1]!.trim(), label: found[2]! } : undefined
}
