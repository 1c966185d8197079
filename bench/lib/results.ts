import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './postgres.js'

/** Writes the full record to bench/results/<name>-<time>.json (gitignored); returns the path. */
export function writeResults(name: string, report: { date: string }): string {
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const file = join(ROOT, 'bench/results', `${name}-${report.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  return file
}

/** A markdown table from rows of cells. */
export function table(header: string[], rows: Array<Array<string | number>>, rightFrom = 1): string {
  const align = header.map((_, i) => (i >= rightFrom ? '---:' : '---'))
  return [`| ${header.join(' | ')} |`, `| ${align.join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}
