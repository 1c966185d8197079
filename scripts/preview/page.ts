/**
 * The preview page, run by Chromium (scripts/preview/render.ts transpiles it and inlines it with
 * uPlot, the chart library Grafana's time series panels are built on): lays a dashboard out on
 * Grafana's 24-column grid in its dark theme, draws each time series panel with uPlot and each stat
 * panel as Grafana's big-value tiles, from the range queries the preview data carries.
 */
import type uPlot from 'uplot'
import type { Panel, RowPanel, StatPanel, Threshold, TimeseriesPanel } from '../../src/grafana/model.js'

export interface PreviewSeries {
  name: string
  /** [unix seconds, value]; null where Prometheus had no sample or NaN */
  values: Array<[number, number | null]>
}

export interface PreviewPanel {
  panel: Panel | RowPanel
  /** the query range, in unix seconds */
  range?: { start: number; end: number; step: number }
  series: PreviewSeries[]
}

export interface PreviewDashboard {
  title: string
  /** the variables' values, as the bar under the title shows them */
  variables: Array<[string, string]>
  footer: string
  width: number
  panels: PreviewPanel[]
}

declare global {
  interface Window {
    preview?: PreviewDashboard
    previewReady?: boolean
    previewError?: string
  }
}

const UPlot = (window as unknown as { uPlot: typeof uPlot }).uPlot

// Grafana's dark theme and layout constants (react-grid-layout: 30 px rows, 8 px margins)
const CELL_HEIGHT = 30
const MARGIN = 8
const COLUMNS = 24
const TEXT = 'rgb(204, 204, 220)'
const TEXT_DIM = 'rgba(204, 204, 220, 0.65)'
const GRID = 'rgba(240, 250, 255, 0.09)'
const FONT = 'Inter, "Helvetica Neue", Arial, "Liberation Sans", sans-serif'
/** Grafana's classic palette, in its order. */
const PALETTE = [
  '#7EB26D',
  '#EAB839',
  '#6ED0E0',
  '#EF843C',
  '#E24D42',
  '#1F78C1',
  '#BA43A9',
  '#705DA0',
  '#508642',
  '#CCA300',
  '#447EBC',
  '#C15C17',
]
const NAMED: Record<string, string> = {
  green: '#73BF69',
  yellow: '#FADE2A',
  red: '#F2495C',
  orange: '#FF9830',
  blue: '#5794F2',
  purple: '#B877D9',
}

const CSS = `
  body { margin: 0; background: #111217; color: ${TEXT}; font: 14px ${FONT}; }
  #dashboard { padding: 16px; }
  h1 { font-size: 20px; font-weight: 500; margin: 0 0 12px; }
  .variables { display: flex; gap: 8px; margin-bottom: 16px; font-size: 12px; }
  .variable { border: 1px solid rgba(204, 204, 220, 0.2); border-radius: 2px; display: flex; }
  .variable b { font-weight: 500; padding: 5px 8px; background: #22252b; border-right: 1px solid rgba(204, 204, 220, 0.2); }
  .variable span { padding: 5px 8px; color: ${TEXT_DIM}; }
  .grid { position: relative; }
  .row { position: absolute; font-size: 16px; font-weight: 500; display: flex; align-items: center; }
  .panel { position: absolute; box-sizing: border-box; background: #181b1f; border: 1px solid rgba(204, 204, 220, 0.12);
           border-radius: 2px; display: flex; flex-direction: column; overflow: hidden; }
  .header { height: 32px; flex: none; display: flex; align-items: center; padding: 0 8px; gap: 8px; }
  .title { font-weight: 500; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; flex: 1; }
  .time-override { color: #6e9fff; font-size: 12px; white-space: nowrap; }
  .body { flex: 1; min-height: 0; display: flex; flex-direction: column; padding: 0 8px 8px; }
  .chart { flex: 1; min-height: 0; }
  .legend { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; color: ${TEXT_DIM}; padding-top: 4px; }
  .legend i { display: inline-block; width: 14px; height: 4px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }
  .no-data { flex: 1; display: flex; align-items: center; justify-content: center; color: ${TEXT_DIM}; }
  .tiles { flex: 1; display: flex; gap: 4px; min-height: 0; }
  .tile { flex: 1; position: relative; display: flex; flex-direction: column; justify-content: center; align-items: center;
          border-radius: 2px; overflow: hidden; min-width: 0; }
  .tile .name { font-size: 13px; z-index: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 95%; }
  .tile .value { font-weight: 500; z-index: 1; line-height: 1.1; white-space: nowrap; }
  .tile .spark { position: absolute; left: 0; right: 0; bottom: 0; }
  .footer { margin-top: 12px; font-size: 12px; color: ${TEXT_DIM}; }
`

const named = (color: string): string => NAMED[color] ?? color
/** `hex` at opacity `a` over a panel's background, as one opaque colour (stacked bars overlap). */
const overPanel = (hex: string, a: number): string => {
  const channel = (i: number, under: number) => Math.round(parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16) * a + under * (1 - a))
  return `rgb(${channel(0, 0x18)}, ${channel(1, 0x1b)}, ${channel(2, 0x1f)})`
}
const alpha = (hex: string, a: number): string =>
  `${hex}${Math.round(a * 255)
    .toString(16)
    .padStart(2, '0')}`

function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, parent: HTMLElement, text?: string) {
  const node = document.createElement(tag)
  node.className = className
  if (text !== undefined) node.textContent = text
  parent.append(node)
  return node
}

// ---- values as Grafana's units show them ----

function plain(value: number, decimals: number | undefined): string {
  if (decimals !== undefined) return value.toFixed(decimals)
  const abs = Math.abs(value)
  if (abs === 0) return '0'
  if (abs >= 100) return String(Math.round(value))
  if (abs >= 10) return String(+value.toFixed(1))
  if (abs >= 1) return String(+value.toFixed(2))
  return String(+value.toPrecision(2))
}

function short(value: number, decimals: number | undefined): string {
  const abs = Math.abs(value)
  for (const [size, suffix] of [
    [1e12, ' Tri'],
    [1e9, ' Bil'],
    [1e6, ' Mil'],
    [1e3, ' K'],
  ] as const) {
    if (abs >= size) return `${plain(value / size, decimals)}${suffix}`
  }
  return plain(value, decimals)
}

function seconds(value: number, decimals: number | undefined): string {
  const abs = Math.abs(value)
  if (abs === 0) return '0 s'
  if (abs < 1) return `${plain(value * 1000, decimals)} ms`
  for (const [size, unit] of [
    [31_536_000, 'year'],
    [604_800, 'week'],
    [86_400, 'day'],
    [3600, 'hour'],
    [60, 'min'],
  ] as const) {
    if (abs >= size) return `${plain(value / size, decimals)} ${unit}`
  }
  return `${plain(value, decimals)} s`
}

function formatValue(unit: string | undefined, value: number, decimals?: number): string {
  switch (unit) {
    case 's':
      return seconds(value, decimals)
    case 'percentunit':
      return `${plain(value * 100, decimals)}%`
    case 'cpm':
      return `${short(value, decimals)} cpm`
    case 'reqps':
      return `${short(value, decimals)} req/s`
    case 'none':
      return plain(value, decimals)
    default:
      return short(value, decimals)
  }
}

type Defaults = Panel['fieldConfig']['defaults']

function mapping(defaults: Defaults, value: number): { text?: string; color?: string } | undefined {
  for (const map of defaults.mappings ?? []) {
    if (map.type === 'value') {
      const hit = map.options[String(value)]
      if (hit) return hit
    }
  }
  return undefined
}

function thresholdColor(steps: Threshold[], value: number): string {
  let color = 'green'
  for (const step of steps) if (step.value === null || value >= step.value) color = step.color
  return named(color)
}

// ---- panels ----

function timeseries(body: HTMLElement, panel: TimeseriesPanel, data: PreviewPanel): void {
  const defaults = panel.fieldConfig.defaults
  const custom = defaults.custom ?? {}
  if (data.series.length === 0) {
    element('div', 'no-data', body, 'No data')
    return
  }
  const chart = element('div', 'chart', body)
  const legend = element('div', 'legend', body)
  const colors = data.series.map((_, i) => PALETTE[i % PALETTE.length]!)
  data.series.forEach((series, i) => {
    const item = element('span', '', legend)
    element('i', '', item).style.background = colors[i]!
    item.append(series.name)
  })

  const times = [...new Set(data.series.flatMap((s) => s.values.map(([t]) => t)))].sort((a, b) => a - b)
  const columns = data.series.map((s) => {
    const byTime = new Map(s.values)
    return times.map((t) => byTime.get(t) ?? null)
  })
  const stacked = custom.stacking?.mode === 'normal'
  if (stacked) {
    // Grafana stacks by adding each series onto the ones before it; a gap stays a gap.
    const sums = times.map(() => 0)
    for (const column of columns) {
      column.forEach((value, k) => {
        if (value === null) return
        sums[k] = sums[k]! + value
        column[k] = sums[k]!
      })
    }
  }
  const bars = custom.drawStyle === 'bars'
  const fill = (custom.fillOpacity ?? 0) / 100
  const steps = defaults.thresholds?.steps ?? []
  const dashed = custom.thresholdsStyle?.mode === 'dashed' ? steps.filter((step) => step.value !== null) : []
  const range = data.range!
  const span = range.end - range.start
  const two = (n: number) => String(n).padStart(2, '0')
  // Grafana's time axis: seconds on short ranges, minutes within a day or two, then dates
  const clock = (ts: number) => {
    const d = new Date(ts * 1000)
    if (span > 2 * 86_400) return `${two(d.getUTCMonth() + 1)}/${two(d.getUTCDate())}`
    const minutes = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`
    return span <= 600 ? `${minutes}:${two(d.getUTCSeconds())}` : minutes
  }
  // Stacked bars are drawn top segment first, each from zero, so the ones below paint over them.
  const order = bars && stacked ? data.series.map((_, i) => data.series.length - 1 - i) : data.series.map((_, i) => i)

  const options: uPlot.Options = {
    width: chart.clientWidth,
    height: chart.clientHeight,
    legend: { show: false },
    cursor: { show: false },
    scales: {
      x: { time: true, range: () => [range.start - (bars ? range.step / 2 : 0), range.end + (bars ? range.step / 2 : 0)] },
      y: {
        // like Grafana, the axis fits the data (a threshold above it is not drawn)
        range: (_u, min, max) => {
          const [, niceMax] = UPlot.rangeNum(defaults.min ?? min, max > 0 ? max : 1, 0.1, true)
          return [defaults.min ?? min, defaults.max ?? niceMax]
        },
      },
    },
    axes: [
      {
        stroke: TEXT_DIM,
        font: `12px ${FONT}`,
        grid: { stroke: GRID, width: 1 },
        ticks: { show: false },
        space: 60,
        size: 30,
        values: (_u, splits) => splits.map(clock),
      },
      {
        stroke: TEXT_DIM,
        font: `12px ${FONT}`,
        grid: { stroke: GRID, width: 1 },
        ticks: { show: false },
        size: 60,
        values: (_u, splits) => splits.map((v) => formatValue(defaults.unit, v, defaults.decimals)),
      },
    ],
    series: [
      {},
      ...order.map((i): uPlot.Series => ({
        label: data.series[i]!.name,
        stroke: colors[i],
        width: custom.lineWidth ?? 1,
        // stacked lines: the first series fills to zero, the others down to the one below (bands)
        fill: bars ? overPanel(colors[i]!, fill) : !stacked || i === 0 ? alpha(colors[i]!, fill) : undefined,
        spanGaps: custom.spanNulls === true,
        points: { show: false },
        paths: bars ? UPlot.paths.bars!({ size: [0.6, 80], align: 0 }) : undefined,
      })),
    ],
    bands:
      stacked && !bars
        ? data.series.slice(1).map((_, k): uPlot.Band => ({ series: [k + 2, k + 1], fill: alpha(colors[k + 1]!, fill) }))
        : [],
    hooks: {
      draw: [
        (u) => {
          // thresholds drawn as dashed lines: the alert levels
          const ctx = u.ctx
          ctx.save()
          ctx.setLineDash([10, 10])
          ctx.lineWidth = 1
          for (const step of dashed) {
            const y = u.valToPos(step.value!, 'y', true)
            ctx.strokeStyle = named(step.color)
            ctx.beginPath()
            ctx.moveTo(u.bbox.left, y)
            ctx.lineTo(u.bbox.left + u.bbox.width, y)
            ctx.stroke()
          }
          ctx.restore()
        },
      ],
    },
  }
  new UPlot(options, [times, ...order.map((i) => columns[i]!)], chart)
}

function stat(body: HTMLElement, panel: StatPanel, data: PreviewPanel): void {
  const defaults = panel.fieldConfig.defaults
  const tiles = data.series
    .map((series) => ({ series, last: [...series.values].reverse().find(([, v]) => v !== null)?.[1] ?? null }))
    .filter((tile): tile is { series: PreviewSeries; last: number } => tile.last !== null)
  if (tiles.length === 0) {
    element('div', 'no-data', body, 'No data')
    return
  }
  const container = element('div', 'tiles', body)
  const background = panel.options.colorMode === 'background'
  const showName = panel.options.textMode === 'value_and_name'
  for (const { series, last } of tiles) {
    const mapped = mapping(defaults, last)
    const color = named(mapped?.color ?? thresholdColor(defaults.thresholds?.steps ?? [], last))
    const tile = element('div', 'tile', container)
    if (background) tile.style.background = `linear-gradient(120deg, ${color}, ${alpha(color, 0.75)})`
    if (showName) element('div', 'name', tile, series.name).style.color = background ? '#fff' : TEXT
    const text = mapped?.text ?? formatValue(defaults.unit, last, defaults.decimals)
    const value = element('div', 'value', tile, text)
    value.style.color = background ? '#fff' : color
    const height = tile.clientHeight - (showName ? 18 : 0)
    const sparkline = panel.options.graphMode === 'area'
    value.style.fontSize = `${Math.max(12, Math.min(height * (sparkline ? 0.45 : 0.6), (tile.clientWidth * 0.85) / (0.6 * text.length), 56))}px`
    if (panel.options.graphMode === 'area') {
      // the value sits above the sparkline, which fills the lower part of the tile
      value.style.marginBottom = `${Math.round(tile.clientHeight * 0.2)}px`
      const spark = element('div', 'spark', tile)
      const points = series.values.filter((point): point is [number, number] => point[1] !== null)
      const sparkColor = background ? 'rgba(255, 255, 255, 0.5)' : color
      new UPlot(
        {
          width: tile.clientWidth,
          height: Math.round(tile.clientHeight * 0.5),
          legend: { show: false },
          cursor: { show: false },
          axes: [{ show: false }, { show: false }],
          scales: { x: { time: false }, y: { range: (_u, min, max) => [Math.min(0, min), max > min ? max : min + 1] } },
          series: [
            {},
            { stroke: sparkColor, width: 1, fill: background ? 'rgba(255, 255, 255, 0.12)' : alpha(color, 0.15), points: { show: false } },
          ],
        },
        [points.map(([t]) => t), points.map(([, v]) => v)],
        spark,
      )
    }
  }
}

function render(dashboard: PreviewDashboard): void {
  const style = document.createElement('style')
  style.textContent = CSS
  document.head.append(style)
  const root = document.getElementById('dashboard')!
  element('h1', '', root, dashboard.title)
  const variables = element('div', 'variables', root)
  for (const [label, value] of dashboard.variables) {
    const variable = element('div', 'variable', variables)
    element('b', '', variable, label)
    element('span', '', variable, value)
  }
  const grid = element('div', 'grid', root)
  const width = dashboard.width - 32
  const column = (width - MARGIN * (COLUMNS - 1)) / COLUMNS
  const bottom = Math.max(...dashboard.panels.map(({ panel }) => panel.gridPos.y + panel.gridPos.h))
  grid.style.height = `${bottom * (CELL_HEIGHT + MARGIN)}px`
  for (const data of dashboard.panels) {
    const { x, y, w, h } = data.panel.gridPos
    const box = data.panel.type === 'row' ? element('div', 'row', grid, data.panel.title) : element('div', 'panel', grid)
    Object.assign(box.style, {
      left: `${x * (column + MARGIN)}px`,
      top: `${y * (CELL_HEIGHT + MARGIN)}px`,
      width: `${w * column + (w - 1) * MARGIN}px`,
      height: `${h * CELL_HEIGHT + (h - 1) * MARGIN}px`,
    })
    if (data.panel.type === 'row') continue
    const header = element('div', 'header', box)
    element('div', 'title', header, data.panel.title)
    if (data.panel.timeFrom) element('div', 'time-override', header, `Last ${data.panel.timeFrom.replace(/d$/, ' days')}`)
    const body = element('div', 'body', box)
    if (data.panel.type === 'timeseries') timeseries(body, data.panel, data)
    else stat(body, data.panel, data)
  }
  element('div', 'footer', root, dashboard.footer)
}

try {
  render(window.preview!)
  // uPlot draws on the next frames; the screenshot waits for them
  requestAnimationFrame(() => requestAnimationFrame(() => (window.previewReady = true)))
} catch (error) {
  window.previewError = error instanceof Error ? (error.stack ?? error.message) : String(error)
}
