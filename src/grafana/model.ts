/**
 * A small typed subset of Grafana's dashboard JSON model (schemaVersion 39, Grafana 10.4/11), as
 * plain objects: the dashboards in grafana/dashboards are generated from the definitions beside
 * this file, so a panel's query, unit and description are written once, in reviewed TypeScript.
 */

/** Every panel and target points at the dashboard's datasource variable, never at a fixed uid or a `${DS_…}` import input. */
export const DATASOURCE = Object.freeze({ type: 'prometheus', uid: '${datasource}' })
export type DatasourceRef = { type: string; uid: string }

/**
 * The label matchers every selector carries, so one dashboard serves any number of Warden
 * replicas (and OTel-instrumented apps) scraped under any job name.
 */
export const SCOPE = 'job=~"$job", instance=~"$instance"'

/** `name{job=~"$job", instance=~"$instance", …extra}` */
export function sel(metric: string, ...extra: string[]): string {
  return `${metric}{${[SCOPE, ...extra].join(', ')}}`
}

export interface Target {
  refId: string
  datasource: DatasourceRef
  expr: string
  legendFormat: string
  range: boolean
  instant: boolean
  editorMode: 'code'
}

export interface Threshold {
  color: string
  value: number | null
}

export interface ValueMapping {
  type: 'value'
  options: Record<string, { text: string; color: string; index: number }>
}

export interface FieldDefaults {
  unit: string
  decimals?: number
  min?: number
  max?: number
  color: { mode: string }
  thresholds: { mode: 'absolute'; steps: Threshold[] }
  mappings: ValueMapping[]
  custom?: Record<string, unknown>
}

export interface GridPos {
  h: number
  w: number
  x: number
  y: number
}

export interface Panel {
  id: number
  type: 'timeseries' | 'stat' | 'row'
  title: string
  description: string
  gridPos: GridPos
  datasource?: DatasourceRef
  targets?: Target[]
  fieldConfig?: { defaults: FieldDefaults; overrides: unknown[] }
  options?: Record<string, unknown>
  /** the panel's "min interval" query option */
  interval?: string
  /** the panel's relative time override, e.g. "7d" */
  timeFrom?: string
  collapsed?: boolean
  panels?: Panel[]
}

export interface Variable {
  name: string
  label: string
  type: 'datasource' | 'query'
  query: string
  description?: string
  datasource?: DatasourceRef
  definition?: string
  /** the selection a fresh dashboard opens with: {} takes Grafana's default */
  current: { selected?: boolean; text?: string[]; value?: string[] }
  hide: 0
  includeAll: boolean
  multi: boolean
  allValue?: string
  options: never[]
  /** 1: on dashboard load; 2: on time range change */
  refresh: 1 | 2
  regex: string
  sort?: number
}

export interface Dashboard {
  /** null: Grafana assigns its own on import or provisioning */
  id: null
  uid: string
  title: string
  description: string
  tags: string[]
  timezone: 'browser'
  editable: boolean
  graphTooltip: 1
  schemaVersion: 39
  version: 1
  refresh: string
  time: { from: string; to: string }
  timepicker: Record<string, never>
  fiscalYearStartMonth: 0
  liveNow: false
  weekStart: ''
  links: unknown[]
  annotations: { list: unknown[] }
  templating: { list: Variable[] }
  panels: Panel[]
}

// ---- variables ----

export const datasourceVariable = (): Variable => ({
  name: 'datasource',
  label: 'Data source',
  type: 'datasource',
  query: 'prometheus',
  current: {},
  hide: 0,
  includeAll: false,
  multi: false,
  options: [],
  refresh: 1,
  regex: '',
})

/**
 * A multi-select label variable. allValue `.+` (not Grafana's default, a regex of every value
 * listed) keeps queries short and matches series that appear after the dashboard loaded.
 */
export function labelVariable(name: string, label: string, query: string, description: string): Variable {
  return {
    name,
    label,
    description,
    type: 'query',
    datasource: { ...DATASOURCE },
    query,
    definition: query,
    // "All" rather than Grafana's pick of the first value, so a fresh dashboard shows every replica
    current: { selected: true, text: ['All'], value: ['$__all'] },
    hide: 0,
    includeAll: true,
    multi: true,
    allValue: '.+',
    options: [],
    refresh: 2,
    regex: '',
    sort: 1,
  }
}

/** datasource, job and instance: job and instance come from `metric`, one every target of the dashboard publishes. */
export function standardVariables(metric: string): Variable[] {
  return [
    datasourceVariable(),
    labelVariable('job', 'Job', `label_values(${metric}, job)`, `Prometheus job label of the scrape targets that publish ${metric}.`),
    labelVariable(
      'instance',
      'Instance',
      `label_values(${metric}{job=~"$job"}, instance)`,
      'Scrape target (host:port) within the selected jobs.',
    ),
  ]
}

// ---- panels ----

export const GREEN: Threshold = { color: 'green', value: null }

export interface PanelSpec {
  title: string
  description: string
  unit: string
  /** one PromQL expression per target, with its legend */
  queries: Array<{ expr: string; legend?: string }>
  /** grid width (24 columns) and height; default 12 × 8 for time series, 6 × 4 for stats */
  w?: number
  h?: number
  min?: number
  max?: number
  decimals?: number
  thresholds?: Threshold[]
  mappings?: ValueMapping[]
}

export interface TimeseriesSpec extends PanelSpec {
  stack?: boolean
  bars?: boolean
  /** draw the thresholds as dashed lines (alert levels) */
  thresholdLines?: boolean
  interval?: string
  timeFrom?: string
}

export interface StatSpec extends PanelSpec {
  /** background: the tile takes the threshold or mapping colour */
  colorMode?: 'value' | 'background'
  /** show each series' name under its value (one tile per series) */
  showNames?: boolean
  sparkline?: boolean
}

const REF_IDS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'

function targets(queries: PanelSpec['queries']): Target[] {
  return queries.map((query, i) => ({
    refId: REF_IDS[i]!,
    datasource: { ...DATASOURCE },
    expr: query.expr,
    legendFormat: query.legend ?? '__auto',
    range: true,
    instant: false,
    editorMode: 'code',
  }))
}

function defaults(spec: PanelSpec, colorMode: string): FieldDefaults {
  return {
    unit: spec.unit,
    ...(spec.decimals !== undefined ? { decimals: spec.decimals } : {}),
    ...(spec.min !== undefined ? { min: spec.min } : {}),
    ...(spec.max !== undefined ? { max: spec.max } : {}),
    color: { mode: colorMode },
    thresholds: { mode: 'absolute', steps: spec.thresholds ?? [GREEN] },
    mappings: spec.mappings ?? [],
  }
}

/** A panel before layout: the dashboard builder assigns ids and grid positions. */
export type PanelDraft = Omit<Panel, 'id' | 'gridPos'> & { w: number; h: number }

export function timeseries(spec: TimeseriesSpec): PanelDraft {
  return {
    type: 'timeseries',
    title: spec.title,
    description: spec.description,
    w: spec.w ?? 12,
    h: spec.h ?? 8,
    datasource: { ...DATASOURCE },
    ...(spec.interval ? { interval: spec.interval } : {}),
    ...(spec.timeFrom ? { timeFrom: spec.timeFrom } : {}),
    targets: targets(spec.queries),
    fieldConfig: {
      defaults: {
        ...defaults({ min: 0, ...spec }, 'palette-classic'),
        custom: {
          drawStyle: spec.bars ? 'bars' : 'line',
          lineWidth: 1,
          fillOpacity: spec.bars ? 80 : spec.stack ? 25 : 10,
          gradientMode: 'none',
          showPoints: 'never',
          spanNulls: false,
          axisPlacement: 'auto',
          stacking: { mode: spec.stack || spec.bars ? 'normal' : 'none', group: 'A' },
          thresholdsStyle: { mode: spec.thresholdLines ? 'dashed' : 'off' },
        },
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true, calcs: [] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  }
}

export function stat(spec: StatSpec): PanelDraft {
  return {
    type: 'stat',
    title: spec.title,
    description: spec.description,
    w: spec.w ?? 6,
    h: spec.h ?? 4,
    datasource: { ...DATASOURCE },
    targets: targets(spec.queries),
    fieldConfig: { defaults: defaults(spec, 'thresholds'), overrides: [] },
    options: {
      reduceOptions: { values: false, calcs: ['lastNotNull'], fields: '' },
      orientation: 'auto',
      textMode: spec.showNames ? 'value_and_name' : 'auto',
      colorMode: spec.colorMode ?? 'value',
      graphMode: spec.sparkline === false ? 'none' : 'area',
      justifyMode: 'auto',
      wideLayout: true,
      showPercentChange: false,
    },
  }
}

/** warden_check_status values as words and colours. */
export const CHECK_STATUS_MAPPINGS: ValueMapping[] = [
  {
    type: 'value',
    options: {
      '0': { text: 'ok', color: 'green', index: 0 },
      '1': { text: 'warning', color: 'yellow', index: 1 },
      '2': { text: 'critical', color: 'red', index: 2 },
    },
  },
]

// ---- dashboard ----

/**
 * The pair of tiles a dashboard shows for a set of doctor checks: the last verdict of each, and
 * whether its last run could run at all (a failed check keeps its old verdict).
 */
export function checkTiles(
  checks: string,
  text: { statusTitle: string; statusDescription: string; successTitle: string; successDescription: string },
): PanelDraft[] {
  const tile = { unit: 'none', colorMode: 'background', showNames: true, sparkline: false } as const
  return [
    stat({
      ...tile,
      title: text.statusTitle,
      description: text.statusDescription,
      w: 16,
      mappings: CHECK_STATUS_MAPPINGS,
      thresholds: [GREEN, { color: 'yellow', value: 1 }, { color: 'red', value: 2 }],
      queries: [{ expr: `max by (check) (${sel('warden_check_status', checks)})`, legend: '{{check}}' }],
    }),
    stat({
      ...tile,
      title: text.successTitle,
      description: text.successDescription,
      w: 8,
      mappings: [
        { type: 'value', options: { '0': { text: 'failed', color: 'red', index: 0 }, '1': { text: 'ran', color: 'green', index: 1 } } },
      ],
      thresholds: [
        { color: 'red', value: null },
        { color: 'green', value: 1 },
      ],
      queries: [{ expr: `min by (check) (${sel('warden_check_success', checks)})`, legend: '{{check}}' }],
    }),
  ]
}

export interface Section {
  title: string
  panels: PanelDraft[]
}

export interface DashboardSpec {
  uid: string
  title: string
  description: string
  variables: Variable[]
  sections: Section[]
}

const GRID_COLUMNS = 24

/**
 * Lays the panels out left to right in rows of 24 columns under a row header per section, and
 * numbers them; ids and positions are derived, so adding a panel never means renumbering by hand.
 */
export function dashboard(spec: DashboardSpec): Dashboard {
  const panels: Panel[] = []
  let id = 1
  let y = 0
  for (const section of spec.sections) {
    panels.push({
      id: id++,
      type: 'row',
      title: section.title,
      description: '',
      collapsed: false,
      panels: [],
      gridPos: { h: 1, w: GRID_COLUMNS, x: 0, y },
    })
    y += 1
    let x = 0
    let rowHeight = 0
    for (const { w, h, ...draft } of section.panels) {
      if (x + w > GRID_COLUMNS) {
        x = 0
        y += rowHeight
        rowHeight = 0
      }
      panels.push({ id: id++, ...draft, gridPos: { h, w, x, y } })
      x += w
      rowHeight = Math.max(rowHeight, h)
    }
    y += rowHeight
  }
  return {
    id: null,
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ['warden'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    links: [
      {
        type: 'dashboards',
        title: 'Warden',
        tags: ['warden'],
        asDropdown: true,
        includeVars: true,
        keepTime: true,
        icon: 'external link',
        targetBlank: false,
        tooltip: '',
        url: '',
      },
    ],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    templating: { list: spec.variables },
    panels,
  }
}
