/**
 * Grafana's dashboard JSON model as @grafana/schema publishes it (the schema of the Grafana major
 * in package.json), for the plain objects the definitions beside this file build: the dashboards
 * in grafana/dashboards are generated from them, so a panel's query, unit and description are
 * written once, in reviewed TypeScript, and a field Grafana does not know fails the type check.
 * The files say schemaVersion 39 so that Grafana 10.4 and later load them; newer ones migrate it.
 */
import type {
  AnnotationQuery,
  DashboardLink,
  DataQuery,
  DataSourceRef,
  FieldColorModeId,
  FieldConfig,
  FieldConfigSource,
  GridPos as SchemaGridPos,
  Panel as SchemaPanel,
  RowPanel as SchemaRowPanel,
  Dashboard as SchemaDashboard,
  Threshold as SchemaThreshold,
  ValueMap,
  VariableModel,
} from '@grafana/schema'
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen'
import type {
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
} from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen'

/**
 * The schema declares its string unions as TypeScript enums; JSON holds their values, so the
 * model takes each enum as the union of its values ('palette-classic', not FieldColorModeId.…).
 */
export type Json<T> = T extends string
  ? `${T}`
  : T extends ReadonlyArray<infer U>
    ? Array<Json<U>>
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T

/** Every panel and target points at the dashboard's datasource variable, never at a fixed uid or a `${DS_…}` import input. */
export const DATASOURCE = Object.freeze({ type: 'prometheus', uid: '${datasource}' })
export type DatasourceRef = Json<DataSourceRef>

/**
 * The label matchers every selector carries, so one dashboard serves any number of Warden
 * replicas (and OTel-instrumented apps) scraped under any job name.
 */
export const SCOPE = 'job=~"$job", instance=~"$instance"'

/**
 * The fleet's matchers: every series Warden derives from a database carries `target` (the name
 * under targets: in its config), session series `table` as well. Pool series of OpenTelemetry-
 * instrumented apps carry neither, so only selectors of Warden's database-derived metrics use them.
 */
export const TARGET = 'target=~"$target"'
export const TABLE = 'table=~"$table"'

/** `name{job=~"$job", instance=~"$instance", …extra}` */
export function sel(metric: string, ...extra: string[]): string {
  return `${metric}{${[SCOPE, ...extra].join(', ')}}`
}

/**
 * A Prometheus target: the fields of the Prometheus datasource's query (Grafana's
 * PrometheusDataQuery kind, published in @grafana/prometheus, a UI package, not in @grafana/schema)
 * that these dashboards set, on the schema's DataQuery.
 */
export interface Target extends Json<DataQuery> {
  datasource: DatasourceRef
  expr: string
  legendFormat: string
  range: boolean
  instant: boolean
  editorMode: 'code' | 'builder'
}

export type Threshold = Json<SchemaThreshold>
export type ValueMapping = Json<ValueMap>
export type ColorMode = Json<FieldColorModeId>
export type GridPos = Json<SchemaGridPos>

/** fieldConfig with the panel plugin's own `custom` block (stat has none). */
type PanelFieldConfig<Custom> = Omit<Json<FieldConfigSource>, 'defaults'> & {
  defaults: Omit<Json<FieldConfig>, 'custom'> & { custom?: Custom }
}

type PanelBase = Omit<Json<SchemaPanel>, 'type' | 'targets' | 'options' | 'fieldConfig' | 'id' | 'gridPos'> & {
  id: number
  gridPos: GridPos
  targets: Target[]
}

export interface TimeseriesPanel extends PanelBase {
  type: 'timeseries'
  fieldConfig: PanelFieldConfig<Json<TimeSeriesFieldConfig>>
  options: Json<TimeSeriesOptions>
}

export interface StatPanel extends PanelBase {
  type: 'stat'
  fieldConfig: PanelFieldConfig<never>
  options: Json<StatOptions>
}

export type Panel = TimeseriesPanel | StatPanel

export interface RowPanel extends Omit<Json<SchemaRowPanel>, 'panels' | 'gridPos'> {
  gridPos: GridPos
  panels: Panel[]
}

export type Variable = Json<VariableModel>

export interface Dashboard extends Omit<Json<SchemaDashboard>, 'panels' | 'templating' | 'links' | 'annotations'> {
  uid: string
  title: string
  description: string
  tags: string[]
  links: Array<Json<DashboardLink>>
  annotations: { list: Array<Json<AnnotationQuery>> }
  templating: { list: Variable[] }
  panels: Array<Panel | RowPanel>
}

// ---- variables ----

export const datasourceVariable = (): Variable => ({
  name: 'datasource',
  label: 'Data source',
  type: 'datasource',
  query: 'prometheus',
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

/**
 * Target, and with `tables` the session table within the selected targets: from warden_target_up,
 * which every target publishes (also through /probe), and warden_sessions_active, one series per
 * table and group.
 */
export function fleetVariables(options: { tables: boolean }): Variable[] {
  const variables = [
    labelVariable(
      'target',
      'Target',
      `label_values(warden_target_up{${SCOPE}}, target)`,
      'Database Warden watches (the names under targets: in its config; default for a single-database config).',
    ),
  ]
  if (options.tables)
    variables.push(
      labelVariable(
        'table',
        'Table',
        `label_values(warden_sessions_active{${SCOPE}, ${TARGET}}, table)`,
        'Session table within the selected targets (its name under sessions:, by default schema.table).',
      ),
    )
  return variables
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
  return queries.map((query, i): Target => ({
    refId: REF_IDS[i]!,
    datasource: { ...DATASOURCE },
    expr: query.expr,
    legendFormat: query.legend ?? '__auto',
    range: true,
    instant: false,
    editorMode: 'code',
  }))
}

// Optional fields are assigned, not spread in, so that the type check sees every field name
// (an unset one is undefined, which JSON.stringify leaves out).
function defaults(spec: PanelSpec, colorMode: ColorMode): Omit<Json<FieldConfig>, 'custom'> {
  return {
    unit: spec.unit,
    decimals: spec.decimals,
    min: spec.min,
    max: spec.max,
    color: { mode: colorMode },
    thresholds: { mode: 'absolute', steps: spec.thresholds ?? [GREEN] },
    mappings: spec.mappings ?? [],
  }
}

/** A panel before layout: the dashboard builder assigns ids and grid positions. */
export type Draft<P extends Panel> = Omit<P, 'id' | 'gridPos'> & { w: number; h: number }
export type PanelDraft = Draft<TimeseriesPanel> | Draft<StatPanel>

export function timeseries(spec: TimeseriesSpec): Draft<TimeseriesPanel> {
  return {
    type: 'timeseries',
    title: spec.title,
    description: spec.description,
    w: spec.w ?? 12,
    h: spec.h ?? 8,
    datasource: { ...DATASOURCE },
    interval: spec.interval,
    timeFrom: spec.timeFrom,
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

export function stat(spec: StatSpec): Draft<StatPanel> {
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
      // required by the schema; Grafana's default
      percentChangeColorMode: 'standard',
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
 * The pair of tiles a dashboard shows for a set of doctor checks: the last verdict of each, per
 * target, and whether its last run could run at all (a failed check keeps its old verdict).
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
      queries: [{ expr: `max by (target, check) (${sel('warden_check_status', checks, TARGET)})`, legend: '{{target}} {{check}}' }],
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
      queries: [{ expr: `min by (target, check) (${sel('warden_check_success', checks, TARGET)})`, legend: '{{target}} {{check}}' }],
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
  const panels: Array<Panel | RowPanel> = []
  let id = 1
  let y = 0
  for (const section of spec.sections) {
    panels.push({
      id: id++,
      type: 'row',
      title: section.title,
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
