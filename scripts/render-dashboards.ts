/**
 * The Grafana dashboards' two renderings.
 *
 *   node --import tsx scripts/render-dashboards.ts json [--check]
 *     writes grafana/dashboards/<uid>.json from src/grafana (the one source of truth);
 *     --check exits 1 instead of writing when a committed file differs.
 *
 *   node --import tsx scripts/render-dashboards.ts png [--seconds 150] [--out docs/images]
 *     runs the live stack of the Grafana tests (an embedded PostgreSQL, warden serve with
 *     scheduled sweeps, two chat servers with LLM traffic and faults, a leaky app, a real
 *     Prometheus: /usr/bin/prometheus) for --seconds, evaluates every panel's queries as range
 *     queries, and draws each dashboard's layout as a PNG (docs/images/<uid>.png). No browser
 *     and no Grafana: a small rasteriser with a built-in 5×7 font and a PNG encoder (zlib).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { deflateSync } from 'node:zlib'
import pg from 'pg'
import { Database } from '../src/db/database.js'
import { startEmbeddedPostgres } from '../src/embedded/embedded-postgres.js'
import { buildDashboards, dashboardFileName, DASHBOARDS_DIR, serializeDashboard } from '../src/grafana/index.js'
import type { TestDatabase } from '../test/helpers/db.js'
import { expandVariables, loadDashboardFiles } from '../test/helpers/grafana-files.js'
import { liveVariables, queryRange, startLiveStack, type RangeSeries } from '../test/helpers/grafana-stack.js'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))

// ---------------------------------------------------------------------------------------------
// json
// ---------------------------------------------------------------------------------------------

function writeJson(check: boolean): number {
  let stale = 0
  for (const dashboard of buildDashboards()) {
    const path = join(ROOT, DASHBOARDS_DIR, dashboardFileName(dashboard))
    const text = serializeDashboard(dashboard)
    let current: string | undefined
    try {
      current = readFileSync(path, 'utf8')
    } catch {
      current = undefined
    }
    if (current === text) continue
    stale += 1
    if (check) console.error(`${relative(ROOT, path)} differs from src/grafana; run: node --import tsx scripts/render-dashboards.ts json`)
    else {
      mkdirSync(join(ROOT, DASHBOARDS_DIR), { recursive: true })
      writeFileSync(path, text)
      console.log(`wrote ${relative(ROOT, path)}`)
    }
  }
  if (stale === 0) console.log('dashboards are up to date')
  return check && stale > 0 ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// A raster, a 5×7 font and a PNG encoder
// ---------------------------------------------------------------------------------------------

type Rgb = [number, number, number]

const hex = (value: string): Rgb => [parseInt(value.slice(1, 3), 16), parseInt(value.slice(3, 5), 16), parseInt(value.slice(5, 7), 16)]

/** Rows top to bottom, '#' set; drawn by hand for this script. */
const GLYPHS: Record<string, string> = {
  ' ': '...../...../...../...../...../...../.....',
  '!': '..#../..#../..#../..#../..#../...../..#..',
  '"': '.#.#./.#.#./...../...../...../...../.....',
  '#': '.#.#./.#.#./#####/.#.#./#####/.#.#./.#.#.',
  $: '..#../.####/#.#../.###./..#.#/####./..#..',
  '%': '##.../##..#/...#./..#../.#.../#..##/...##',
  '&': '.##../#..#./#.#../.#.../#.#.#/#..#./.##.#',
  "'": '..#../..#../...../...../...../...../.....',
  '(': '...#./..#../.#.../.#.../.#.../..#../...#.',
  ')': '.#.../..#../...#./...#./...#./..#../.#...',
  '*': '...../..#../#.#.#/.###./#.#.#/..#../.....',
  '+': '...../..#../..#../#####/..#../..#../.....',
  ',': '...../...../...../...../.##../..#../.#...',
  '-': '...../...../...../#####/...../...../.....',
  '.': '...../...../...../...../...../.##../.##..',
  '/': '...../....#/...#./..#../.#.../#..../.....',
  '0': '.###./#...#/#..##/#.#.#/##..#/#...#/.###.',
  '1': '..#../.##../..#../..#../..#../..#../.###.',
  '2': '.###./#...#/....#/...#./..#../.#.../#####',
  '3': '#####/...#./..#../...#./....#/#...#/.###.',
  '4': '...#./..##./.#.#./#..#./#####/...#./...#.',
  '5': '#####/#..../####./....#/....#/#...#/.###.',
  '6': '..##./.#.../#..../####./#...#/#...#/.###.',
  '7': '#####/....#/...#./..#../.#.../.#.../.#...',
  '8': '.###./#...#/#...#/.###./#...#/#...#/.###.',
  '9': '.###./#...#/#...#/.####/....#/...#./.##..',
  ':': '...../.##../.##../...../.##../.##../.....',
  ';': '...../.##../.##../...../.##../..#../.#...',
  '<': '...#./..#../.#.../#..../.#.../..#../...#.',
  '=': '...../...../#####/...../#####/...../.....',
  '>': '.#.../..#../...#./....#/...#./..#../.#...',
  '?': '.###./#...#/....#/...#./..#../...../..#..',
  '@': '.###./#...#/....#/.##.#/#.#.#/#.#.#/.###.',
  A: '.###./#...#/#...#/#####/#...#/#...#/#...#',
  B: '####./#...#/#...#/####./#...#/#...#/####.',
  C: '.###./#...#/#..../#..../#..../#...#/.###.',
  D: '###../#..#./#...#/#...#/#...#/#..#./###..',
  E: '#####/#..../#..../####./#..../#..../#####',
  F: '#####/#..../#..../####./#..../#..../#....',
  G: '.###./#...#/#..../#.###/#...#/#...#/.####',
  H: '#...#/#...#/#...#/#####/#...#/#...#/#...#',
  I: '.###./..#../..#../..#../..#../..#../.###.',
  J: '..###/...#./...#./...#./...#./#..#./.##..',
  K: '#...#/#..#./#.#../##.../#.#../#..#./#...#',
  L: '#..../#..../#..../#..../#..../#..../#####',
  M: '#...#/##.##/#.#.#/#.#.#/#...#/#...#/#...#',
  N: '#...#/#...#/##..#/#.#.#/#..##/#...#/#...#',
  O: '.###./#...#/#...#/#...#/#...#/#...#/.###.',
  P: '####./#...#/#...#/####./#..../#..../#....',
  Q: '.###./#...#/#...#/#...#/#.#.#/#..#./.##.#',
  R: '####./#...#/#...#/####./#.#../#..#./#...#',
  S: '.####/#..../#..../.###./....#/....#/####.',
  T: '#####/..#../..#../..#../..#../..#../..#..',
  U: '#...#/#...#/#...#/#...#/#...#/#...#/.###.',
  V: '#...#/#...#/#...#/#...#/#...#/.#.#./..#..',
  W: '#...#/#...#/#...#/#.#.#/#.#.#/#.#.#/.#.#.',
  X: '#...#/#...#/.#.#./..#../.#.#./#...#/#...#',
  Y: '#...#/#...#/#...#/.#.#./..#../..#../..#..',
  Z: '#####/....#/...#./..#../.#.../#..../#####',
  '[': '.###./.#.../.#.../.#.../.#.../.#.../.###.',
  '\\': '...../#..../.#.../..#../...#./....#/.....',
  ']': '.###./...#./...#./...#./...#./...#./.###.',
  '^': '..#../.#.#./#...#/...../...../...../.....',
  _: '...../...../...../...../...../...../#####',
  '`': '.#.../..#../...#./...../...../...../.....',
  a: '...../...../.###./....#/.####/#...#/.####',
  b: '#..../#..../#.##./##..#/#...#/#...#/####.',
  c: '...../...../.###./#..../#..../#...#/.###.',
  d: '....#/....#/.##.#/#..##/#...#/#...#/.####',
  e: '...../...../.###./#...#/#####/#..../.###.',
  f: '..##./.#..#/.#.../###../.#.../.#.../.#...',
  g: '...../...../.####/#...#/.####/....#/.###.',
  h: '#..../#..../#.##./##..#/#...#/#...#/#...#',
  i: '..#../...../.##../..#../..#../..#../.###.',
  j: '...#./...../..##./...#./...#./#..#./.##..',
  k: '#..../#..../#..#./#.#../##.../#.#../#..#.',
  l: '.##../..#../..#../..#../..#../..#../.###.',
  m: '...../...../##.#./#.#.#/#.#.#/#...#/#...#',
  n: '...../...../#.##./##..#/#...#/#...#/#...#',
  o: '...../...../.###./#...#/#...#/#...#/.###.',
  p: '...../...../####./#...#/####./#..../#....',
  q: '...../...../.##.#/#..##/.####/....#/....#',
  r: '...../...../#.##./##..#/#..../#..../#....',
  s: '...../...../.###./#..../.###./....#/####.',
  t: '.#.../.#.../###../.#.../.#.../.#..#/..##.',
  u: '...../...../#...#/#...#/#...#/#..##/.##.#',
  v: '...../...../#...#/#...#/#...#/.#.#./..#..',
  w: '...../...../#...#/#...#/#.#.#/#.#.#/.#.#.',
  x: '...../...../#...#/.#.#./..#../.#.#./#...#',
  y: '...../...../#...#/#...#/.####/....#/.###.',
  z: '...../...../#####/...#./..#../.#.../#####',
  '{': '...#./..#../..#../.#.../..#../..#../...#.',
  '|': '..#../..#../..#../..#../..#../..#../..#..',
  '}': '.#.../..#../..#../...#./..#../..#../.#...',
  '~': '...../...../.#.../#.#.#/...#./...../.....',
}
const GLYPH_ROWS = new Map(Object.entries(GLYPHS).map(([char, rows]) => [char, rows.split('/')]))
const ADVANCE = 6

class Raster {
  readonly data: Uint8Array

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb,
  ) {
    this.data = new Uint8Array(width * height * 3)
    this.fill(0, 0, width, height, background)
  }

  blend(x: number, y: number, color: Rgb, alpha = 1): void {
    x = Math.round(x)
    y = Math.round(y)
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || alpha <= 0) return
    const i = (y * this.width + x) * 3
    const a = Math.min(1, alpha)
    for (let c = 0; c < 3; c += 1) this.data[i + c] = Math.round(this.data[i + c]! * (1 - a) + color[c]! * a)
  }

  fill(x: number, y: number, w: number, h: number, color: Rgb, alpha = 1): void {
    const x0 = Math.max(0, Math.round(x))
    const y0 = Math.max(0, Math.round(y))
    const x1 = Math.min(this.width, Math.round(x + w))
    const y1 = Math.min(this.height, Math.round(y + h))
    for (let py = y0; py < y1; py += 1) for (let px = x0; px < x1; px += 1) this.blend(px, py, color, alpha)
  }

  /** Xiaolin Wu's antialiased line, drawn twice a pixel apart for a 2 px stroke. */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, alpha = 1, thick = true): void {
    const plot = (x: number, y: number, c: number) => {
      this.blend(x, y, color, c * alpha)
      if (thick) this.blend(x, y + 1, color, c * alpha * 0.6)
    }
    const steep = Math.abs(y1 - y0) > Math.abs(x1 - x0)
    if (steep) [x0, y0, x1, y1] = [y0, x0, y1, x1]
    if (x0 > x1) [x0, x1, y0, y1] = [x1, x0, y1, y0]
    const dx = x1 - x0
    const gradient = dx === 0 ? 1 : (y1 - y0) / dx
    let y = y0
    for (let x = Math.round(x0); x <= Math.round(x1); x += 1) {
      const f = y - Math.floor(y)
      if (steep) {
        plot(Math.floor(y), x, 1 - f)
        plot(Math.floor(y) + 1, x, f)
      } else {
        plot(x, Math.floor(y), 1 - f)
        plot(x, Math.floor(y) + 1, f)
      }
      y += gradient
    }
  }

  dashed(x0: number, x1: number, y: number, color: Rgb): void {
    for (let x = x0; x < x1; x += 8) this.fill(x, y, Math.min(4, x1 - x), 1, color, 0.9)
  }

  text(x: number, y: number, text: string, color: Rgb, scale = 1, alpha = 1): void {
    let cx = x
    for (const char of text) {
      const rows = GLYPH_ROWS.get(char) ?? GLYPH_ROWS.get('?')!
      rows.forEach((row, ry) => {
        for (let rx = 0; rx < 5; rx += 1) if (row[rx] === '#') this.fill(cx + rx * scale, y + ry * scale, scale, scale, color, alpha)
      })
      cx += ADVANCE * scale
    }
  }

  png(): Buffer {
    const stride = this.width * 3 + 1
    const raw = Buffer.alloc(stride * this.height)
    for (let y = 0; y < this.height; y += 1) {
      raw[y * stride] = 0 // filter: none
      Buffer.from(this.data.buffer, this.data.byteOffset + y * this.width * 3, this.width * 3).copy(raw, y * stride + 1)
    }
    const header = Buffer.alloc(13)
    header.writeUInt32BE(this.width, 0)
    header.writeUInt32BE(this.height, 4)
    header.set([8, 2, 0, 0, 0], 8) // 8-bit RGB, deflate, no interlace
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', header),
      chunk('IDAT', deflateSync(raw, { level: 9 })),
      chunk('IEND', Buffer.alloc(0)),
    ])
  }
}

const textWidth = (text: string, scale = 1) => text.length * ADVANCE * scale - scale

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(bytes: Buffer): number {
  let c = 0xffffffff
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(body.length)
  const typed = Buffer.concat([Buffer.from(type, 'ascii'), body])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(typed))
  return Buffer.concat([length, typed, crc])
}

// ---------------------------------------------------------------------------------------------
// Dashboards drawn as Grafana lays them out (dark theme)
// ---------------------------------------------------------------------------------------------

const THEME = {
  background: hex('#111217'),
  panel: hex('#181b1f'),
  border: hex('#2c3235'),
  grid: hex('#22252b'),
  title: hex('#d8d9da'),
  text: hex('#9fa7b3'),
  dim: hex('#6e7681'),
}
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
].map(hex)
const NAMED: Record<string, string> = {
  green: '#73BF69',
  yellow: '#FADE2A',
  red: '#F2495C',
  orange: '#FF9830',
  blue: '#5794F2',
  purple: '#B877D9',
}
const named = (color: string): Rgb => hex(NAMED[color] ?? (color.startsWith('#') ? color : '#9fa7b3'))

interface FieldDefaults {
  unit?: string
  min?: number
  max?: number
  thresholds?: { steps: Array<{ color: string; value: number | null }> }
  mappings?: Array<{ options: Record<string, { text: string; color: string }> }>
  custom?: { drawStyle?: string; stacking?: { mode?: string }; thresholdsStyle?: { mode?: string } }
}

interface Panel {
  type: string
  title: string
  gridPos: { x: number; y: number; w: number; h: number }
  interval?: string
  timeFrom?: string
  targets?: Array<{ refId: string; expr: string; legendFormat?: string }>
  fieldConfig?: { defaults?: FieldDefaults }
  options?: { colorMode?: string; textMode?: string; graphMode?: string }
}

interface Drawn {
  name: string
  values: Array<[number, number]>
}

function formatValue(unit: string | undefined, value: number): string {
  if (!Number.isFinite(value)) return 'NaN'
  const short = (v: number): string => {
    const abs = Math.abs(v)
    if (abs >= 1e9) return `${+(v / 1e9).toFixed(1)}B`
    if (abs >= 1e6) return `${+(v / 1e6).toFixed(1)}M`
    if (abs >= 1e4) return `${+(v / 1e3).toFixed(1)}K`
    if (abs >= 100) return `${Math.round(v)}`
    if (abs >= 10) return `${+v.toFixed(1)}`
    if (abs >= 1) return `${+v.toFixed(2)}`
    if (abs === 0) return '0'
    return `${+v.toPrecision(2)}`
  }
  switch (unit) {
    case 's': {
      const abs = Math.abs(value)
      if (abs === 0) return '0 s'
      if (abs < 1) return `${short(value * 1000)} ms`
      if (abs < 60) return `${short(value)} s`
      if (abs < 3600) return `${short(value / 60)} min`
      if (abs < 86_400) return `${short(value / 3600)} h`
      if (abs < 86_400 * 365) return `${short(value / 86_400)} day`
      return `${short(value / (86_400 * 365))} year`
    }
    case 'percentunit':
      return `${short(value * 100)}%`
    case 'cpm':
      return `${short(value)} cpm`
    case 'reqps':
      return `${short(value)} req/s`
    default:
      return short(value)
  }
}

function legendName(format: string | undefined, metric: Record<string, string>, refId: string): string {
  if (!format || format === '__auto') {
    const labels = Object.entries(metric).filter(([key]) => key !== 'job' && key !== 'instance')
    return labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(', ') : refId
  }
  const name = format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label: string) => metric[label] ?? '').trim()
  return name || refId
}

function colorFor(defaults: FieldDefaults, value: number): Rgb {
  for (const mapping of defaults.mappings ?? []) {
    const hit = mapping.options[String(value)]
    if (hit) return named(hit.color)
  }
  let color = 'green'
  for (const step of defaults.thresholds?.steps ?? []) if (step.value === null || value >= step.value) color = step.color
  return named(color)
}

function mapped(defaults: FieldDefaults, value: number): string | undefined {
  for (const mapping of defaults.mappings ?? []) {
    const hit = mapping.options[String(value)]
    if (hit) return hit.text
  }
  return undefined
}

const lastFinite = (values: Array<[number, number]>): number | undefined => [...values].reverse().find(([, v]) => Number.isFinite(v))?.[1]

function niceCeil(value: number): number {
  if (value <= 0) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * power >= value) return m * power
  return 10 * power
}

function clock(t: number, days: boolean): string {
  const iso = new Date(t * 1000).toISOString()
  return days ? iso.slice(5, 10) : iso.slice(11, 19)
}

interface Range {
  start: number
  end: number
  step: number
}

function drawTimeseries(r: Raster, panel: Panel, series: Drawn[], box: { x: number; y: number; w: number; h: number }, range: Range): void {
  const defaults = panel.fieldConfig?.defaults ?? {}
  const stacked = defaults.custom?.stacking?.mode === 'normal'
  const bars = defaults.custom?.drawStyle === 'bars'
  // legend: swatch and name, wrapped, at most three lines
  const legendLines: Array<Array<{ name: string; color: Rgb }>> = [[]]
  let lineWidth = 0
  const maxLegend = box.w - 16
  series.forEach((s, i) => {
    const name = s.name.length > 40 ? `${s.name.slice(0, 39)}~` : s.name
    const width = 12 + textWidth(name) + 12
    if (lineWidth + width > maxLegend && legendLines.at(-1)!.length > 0) {
      legendLines.push([])
      lineWidth = 0
    }
    legendLines.at(-1)!.push({ name, color: PALETTE[i % PALETTE.length]! })
    lineWidth += width
  })
  const lines = legendLines.slice(0, 3)
  const legendHeight = lines.length * 11 + 4

  const times = [...new Set(series.flatMap((s) => s.values.map(([t]) => t)))].sort((a, b) => a - b)
  const stackedValues = new Map<number, number>()
  const tops: Array<Map<number, number>> = []
  for (const s of series) {
    const top = new Map<number, number>()
    for (const [t, v] of s.values) {
      if (!Number.isFinite(v)) continue
      const base = stacked || bars ? (stackedValues.get(t) ?? 0) : 0
      top.set(t, base + v)
      if (stacked || bars) stackedValues.set(t, base + v)
    }
    tops.push(top)
  }
  const maxData = Math.max(0, ...tops.flatMap((top) => [...top.values()]))
  const yMin = defaults.min ?? 0
  const yMax = defaults.max ?? niceCeil(maxData * 1.05)
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => yMin + f * (yMax - yMin))
  const labelWidth = Math.max(...ticks.map((v) => textWidth(formatValue(defaults.unit, v)))) + 8
  const plot = { x: box.x + 8 + labelWidth, y: box.y + 30, w: box.w - 18 - labelWidth, h: box.h - 30 - 14 - legendHeight }
  if (plot.h < 20) return
  const px = (t: number) => plot.x + ((t - range.start) / Math.max(1, range.end - range.start)) * plot.w
  const py = (v: number) => plot.y + plot.h - ((Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin || 1)) * plot.h

  for (const v of ticks) {
    const y = Math.round(py(v))
    r.fill(plot.x, y, plot.w, 1, THEME.grid)
    const label = formatValue(defaults.unit, v)
    r.text(plot.x - 6 - textWidth(label), y - 3, label, THEME.dim)
  }
  const days = range.end - range.start > 2 * 86_400
  for (let i = 0; i <= 3; i += 1) {
    const t = range.start + (i / 3) * (range.end - range.start)
    const label = clock(t, days)
    const x = Math.min(Math.max(px(t) - textWidth(label) / 2, plot.x), plot.x + plot.w - textWidth(label))
    r.text(x, plot.y + plot.h + 5, label, THEME.dim)
  }

  if (defaults.custom?.thresholdsStyle?.mode === 'dashed') {
    for (const step of defaults.thresholds?.steps ?? []) {
      if (step.value !== null && step.value > yMin && step.value <= yMax)
        r.dashed(plot.x, plot.x + plot.w, Math.round(py(step.value)), named(step.color))
    }
  }

  // bars are one step wide (the per-day panel: one bar a day)
  const slot = (plot.w * range.step) / Math.max(1, range.end - range.start)
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!
    const top = tops[i]!
    const own = new Map(s.values)
    const base = (t: number, v: number) => (stacked || bars ? py(v - (own.get(t) ?? 0)) : plot.y + plot.h)
    if (bars) {
      for (const [t, v] of top) {
        const x0 = Math.max(plot.x, px(t) - slot * 0.4)
        const x1 = Math.min(plot.x + plot.w, px(t) + slot * 0.4)
        r.fill(x0, py(v), x1 - x0, base(t, v) - py(v), color, 0.85)
      }
      return
    }
    // consecutive samples are joined; a missing or NaN sample leaves a gap, as in Grafana
    let previous: { index: number; x: number; y: number; b: number } | undefined
    times.forEach((t, index) => {
      const v = top.get(t)
      if (v === undefined) return
      const point = { index, x: px(t), y: py(v), b: base(t, v) }
      if (previous && previous.index === index - 1) {
        const from = Math.round(previous.x)
        const to = Math.round(point.x)
        for (let x = from; x < to; x += 1) {
          const f = (x - previous.x) / (point.x - previous.x || 1)
          const y = previous.y + f * (point.y - previous.y)
          const b = previous.b + f * (point.b - previous.b)
          r.fill(x, y, 1, b - y, color, stacked ? 0.22 : 0.07)
        }
        r.line(previous.x, previous.y, point.x, point.y, color)
      }
      previous = point
    })
  })

  lines.forEach((items, li) => {
    let x = box.x + 10
    const y = box.y + box.h - legendHeight + 2 + li * 11
    for (const item of items) {
      r.fill(x, y + 2, 8, 3, item.color)
      r.text(x + 12, y, item.name, THEME.text)
      x += 12 + textWidth(item.name) + 12
    }
  })
  if (series.length === 0) {
    const label = 'No data'
    r.text(box.x + box.w / 2 - textWidth(label, 2) / 2, plot.y + plot.h / 2 - 7, label, THEME.dim, 2)
  }
}

function drawStat(r: Raster, panel: Panel, series: Drawn[], box: { x: number; y: number; w: number; h: number }): void {
  const defaults = panel.fieldConfig?.defaults ?? {}
  const tiles = series.filter((s) => lastFinite(s.values) !== undefined)
  if (tiles.length === 0) {
    r.text(box.x + box.w / 2 - textWidth('No data', 2) / 2, box.y + box.h / 2, 'No data', THEME.dim, 2)
    return
  }
  const showNames = panel.options?.textMode === 'value_and_name'
  const area = { x: box.x + 6, y: box.y + 28, w: box.w - 12, h: box.h - 34 }
  const tileW = area.w / tiles.length
  tiles.forEach((s, i) => {
    const value = lastFinite(s.values)!
    const color = colorFor(defaults, value)
    const text = mapped(defaults, value) ?? formatValue(defaults.unit, value)
    const tile = { x: area.x + i * tileW, y: area.y, w: tileW - (tiles.length > 1 ? 4 : 0), h: area.h }
    const background = panel.options?.colorMode === 'background'
    if (background) r.fill(tile.x, tile.y, tile.w, tile.h, color, 0.75)
    if (panel.options?.graphMode !== 'none' && tiles.length === 1) {
      const finite = s.values.filter(([, v]) => Number.isFinite(v))
      const max = Math.max(...finite.map(([, v]) => v), 1e-9)
      const min = Math.min(0, ...finite.map(([, v]) => v))
      let previous: [number, number] | undefined
      finite.forEach(([, v], k) => {
        const point: [number, number] = [
          tile.x + (k / Math.max(1, finite.length - 1)) * tile.w,
          tile.y + tile.h - 2 - ((v - min) / (max - min || 1)) * tile.h * 0.45,
        ]
        if (previous) {
          for (let x = Math.round(previous[0]); x < Math.round(point[0]); x += 1) {
            const y = previous[1] + ((x - previous[0]) / (point[0] - previous[0] || 1)) * (point[1] - previous[1])
            r.fill(x, y, 1, tile.y + tile.h - y, background ? THEME.background : color, 0.12)
          }
          r.line(previous[0], previous[1], point[0], point[1], background ? THEME.title : color, 0.5, false)
        }
        previous = point
      })
    }
    const nameHeight = showNames ? 12 : 0
    let scale = 5
    while (scale > 1 && (textWidth(text, scale) > tile.w - 8 || 7 * scale > tile.h - nameHeight - 4)) scale -= 1
    const textColor = background ? hex('#ffffff') : color
    r.text(tile.x + tile.w / 2 - textWidth(text, scale) / 2, tile.y + (tile.h - nameHeight) / 2 - (7 * scale) / 2, text, textColor, scale)
    if (showNames) {
      const name =
        s.name.length * ADVANCE > tile.w - 4 ? `${s.name.slice(0, Math.max(1, Math.floor((tile.w - 4) / ADVANCE) - 1))}~` : s.name
      r.text(tile.x + tile.w / 2 - textWidth(name) / 2, tile.y + tile.h - 11, name, background ? hex('#ffffff') : THEME.text)
    }
  })
}

/** At most two lines, broken at spaces; what still does not fit ends in ~. */
function wrap(text: string, maxChars: number): string[] {
  if (text.length <= maxChars) return [text]
  const cut = text.lastIndexOf(' ', maxChars)
  const first = cut > 0 ? text.slice(0, cut) : text.slice(0, maxChars)
  const rest = text.slice(first.length).trim()
  return [first, rest.length > maxChars ? `${rest.slice(0, maxChars - 1)}~` : rest]
}

const WIDTH = 1600
const MARGIN = 8
const UNIT = 30
const HEADER = 44

function renderDashboard(title: string, panels: Panel[], data: Map<Panel, Drawn[]>, ranges: Map<Panel, Range>, footer: string): Buffer {
  const column = (WIDTH - 2 * MARGIN) / 24
  const bottom = Math.max(...panels.map((p) => p.gridPos.y + p.gridPos.h))
  const height = HEADER + bottom * UNIT + 28
  const r = new Raster(WIDTH, height, THEME.background)
  r.text(MARGIN + 4, 12, title, THEME.title, 3)
  for (const panel of panels) {
    const box = {
      x: MARGIN + panel.gridPos.x * column + 3,
      y: HEADER + panel.gridPos.y * UNIT + 3,
      w: panel.gridPos.w * column - 6,
      h: panel.gridPos.h * UNIT - 6,
    }
    if (panel.type === 'row') {
      r.text(box.x + 2, box.y + 6, panel.title, THEME.title, 2)
      continue
    }
    r.fill(box.x, box.y, box.w, box.h, THEME.panel)
    r.fill(box.x, box.y, box.w, 1, THEME.border)
    r.fill(box.x, box.y + box.h - 1, box.w, 1, THEME.border)
    r.fill(box.x, box.y, 1, box.h, THEME.border)
    r.fill(box.x + box.w - 1, box.y, 1, box.h, THEME.border)
    const titleLines = wrap(panel.title, Math.floor((box.w - 16) / (ADVANCE * 2)))
    titleLines.forEach((line, i) => r.text(box.x + 8, box.y + 8 + i * 17, line, THEME.title, 2))
    if (panel.timeFrom)
      r.text(box.x + box.w - 8 - textWidth(`last ${panel.timeFrom}`), box.y + 10, `last ${panel.timeFrom}`, hex('#5794F2'))
    const series = data.get(panel) ?? []
    // a second title line pushes the content down
    const content = { ...box, y: box.y + (titleLines.length - 1) * 17, h: box.h - (titleLines.length - 1) * 17 }
    if (panel.type === 'stat') drawStat(r, panel, series, content)
    else drawTimeseries(r, panel, series, content, ranges.get(panel)!)
  }
  r.text(MARGIN + 4, height - 16, footer, THEME.dim)
  return r.png()
}

// ---------------------------------------------------------------------------------------------
// png
// ---------------------------------------------------------------------------------------------

/** Stands in for Grafana's $__rate_interval on these short runs: smooth, yet a few seconds' detail. */
const RATE_INTERVAL = '20s'

function parseArgs(argv: string[]): Record<string, string> {
  const args: Record<string, string> = {}
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!
    if (arg.startsWith('--')) {
      const next = argv[i + 1]
      if (next !== undefined && !next.startsWith('--')) {
        args[arg.slice(2)] = next
        i += 1
      } else args[arg.slice(2)] = 'true'
    }
  }
  return args
}

async function renderPngs(seconds: number, outDir: string): Promise<void> {
  const server = await startEmbeddedPostgres()
  const name = 'warden_preview'
  const admin = new pg.Client({ connectionString: server.url })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(server.url)
  url.pathname = `/${name}`
  const db = new Database({ url: url.toString(), applicationName: 'warden-preview', connectTimeout: 5, statementTimeout: 30, poolMax: 4 })
  const t: TestDatabase = { url: url.toString(), name, db, exec: (text, values) => db.pool.query(text, values), drop: () => db.close() }
  console.log(`embedded PostgreSQL on ${server.port}; starting warden serve, chat servers, LLM traffic and Prometheus`)
  // Sweeps every 10 s let the new orphans pile up in between, as they would between real sweeps.
  const stack = await startLiveStack(t, { sweepSchedule: '*/10 * * * * *' })
  try {
    const started = Date.now() / 1000
    for (let left = seconds; left > 0; left -= 10) {
      console.log(
        `collecting: ${left} s left (turns ${stack.traffic.turns}, held LLM calls ${stack.traffic.heldCalls}, pool timeouts ${stack.traffic.poolTimeouts})`,
      )
      await sleep(Math.min(10, left) * 1000)
    }
    const end = Math.floor(Date.now() / 1000)
    // the first seconds are warm-up: no sweep has succeeded yet and rates have one sample
    const start = Math.ceil(started) + 15
    const step = Math.max(1, Math.round((end - start) / 200))
    const variables = liveVariables(stack, RATE_INTERVAL)
    mkdirSync(outDir, { recursive: true })
    for (const { json } of loadDashboardFiles()) {
      const panels = (json.panels ?? []) as unknown as Panel[]
      const data = new Map<Panel, Drawn[]>()
      const ranges = new Map<Panel, Range>()
      for (const panel of panels) {
        if (panel.type === 'row') continue
        // A panel with its own time range and a day-long minimum interval (closes per day) is asked for days.
        const days = panel.timeFrom?.endsWith('d') ? Number(panel.timeFrom.slice(0, -1)) : 0
        const panelStep = panel.interval === '1d' ? 86_400 : step
        const range = days ? { start: end - days * 86_400, end, step: panelStep } : { start, end, step: panelStep }
        const rateInterval = panel.interval === '1d' ? '1d' : RATE_INTERVAL
        ranges.set(panel, range)
        const drawn: Drawn[] = []
        for (const target of panel.targets ?? []) {
          const result: RangeSeries[] = await queryRange(
            stack.prometheus.url,
            expandVariables(target.expr, { ...variables, __rate_interval: rateInterval }),
            range.start,
            range.end,
            panelStep,
          )
          for (const series of result)
            drawn.push({ name: legendName(target.legendFormat, series.metric, target.refId), values: series.values })
        }
        drawn.sort((a, b) => a.name.localeCompare(b.name))
        data.set(panel, drawn)
      }
      const footer = `Preview drawn by scripts/render-dashboards.ts from a ${Math.round((end - start) / 60)}-minute run of the live test stack (mock LLM, leaky app); $__rate_interval = ${RATE_INTERVAL}. Grafana draws the same queries.`
      const path = join(outDir, `${String(json.uid)}.png`)
      writeFileSync(path, renderDashboard(String(json.title), panels, data, ranges, footer))
      console.log(`wrote ${relative(ROOT, path)}`)
    }
  } finally {
    await stack.stop()
    await db.close()
    await server.stop()
  }
}

async function main(): Promise<number> {
  const [mode, ...rest] = process.argv.slice(2)
  const args = parseArgs(rest)
  if (mode === 'json') return writeJson(args.check === 'true')
  if (mode === 'png') {
    const seconds = Number(args.seconds ?? 150)
    if (!(seconds >= 20)) throw new Error('--seconds: expected at least 20')
    await renderPngs(seconds, resolve(ROOT, args.out ?? 'docs/images'))
    return 0
  }
  console.error('usage: node --import tsx scripts/render-dashboards.ts json [--check] | png [--seconds 150] [--out docs/images]')
  return 64
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
