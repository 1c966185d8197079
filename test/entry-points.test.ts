import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { entryRoutes } from '../src/server/routes/table.js'
import { ROOT } from './helpers/cli.js'

interface ManifestFlag {
  helpGroup?: string
  hidden?: boolean
}
interface Manifest {
  commands: Record<string, { hidden?: boolean; flags: Record<string, ManifestFlag> }>
}

interface Row {
  cells: string[]
  line: number
}

const DOC = join(ROOT, 'docs', 'testing.md')

/** The body rows of the markdown table under `heading`. */
function tableUnder(markdown: string, heading: string): Row[] {
  const lines = markdown.split('\n')
  const start = lines.findIndex((line) => line.trim() === heading)
  if (start < 0) throw new Error(`docs/testing.md has no "${heading}" section`)
  const rows: Row[] = []
  let inTable = false
  for (let i = start + 1; i < lines.length; i += 1) {
    const line = lines[i]!.trim()
    if (line.startsWith('#')) break
    if (!line.startsWith('|')) {
      if (inTable) break
      continue
    }
    inTable = true
    const cells = line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim())
    if (cells.every((cell) => /^-+$/.test(cell))) continue
    rows.push({ cells, line: i + 1 })
  }
  return rows.slice(1) // the header
}

/** `test/x.test.ts` › “title” references of a cell. */
const references = (cell: string) =>
  [...cell.matchAll(/`(test\/[\w.-]+\.test\.ts)` › “([^”]+)”/g)].map((m) => ({ file: m[1]!, title: m[2]! }))

/** The titles of it()/test() and it.each(...)() in a test file, as written (escapes undone). */
function titlesOf(file: string): string[] {
  const source = readFileSync(join(ROOT, file), 'utf8')
  return [...source.matchAll(/(?:\bit|\btest|\))\(\s*(['"`])((?:\\.|(?!\1)[^\\])*?)\1/g)].map((m) => m[2]!.replace(/\\(.)/g, '$1'))
}

function manifests(): Manifest[] {
  const built = join(ROOT, 'oclif.manifest.json')
  if (!existsSync(built)) throw new Error('oclif.manifest.json is missing: run `npm run build`')
  const { oclif } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { oclif: { plugins: string[] } }
  return [
    JSON.parse(readFileSync(built, 'utf8')) as Manifest,
    ...oclif.plugins.map(
      (plugin) => JSON.parse(readFileSync(join(ROOT, 'node_modules', plugin, 'oclif.manifest.json'), 'utf8')) as Manifest,
    ),
  ]
}

/** Every user-facing command as `warden <words>`, with its flags by help group (FLAGS for none). */
function commands(): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>()
  for (const manifest of manifests()) {
    for (const [id, command] of Object.entries(manifest.commands)) {
      if (command.hidden) continue
      const groups = new Map<string, string[]>()
      for (const [name, flag] of Object.entries(command.flags)) {
        if (flag.hidden) continue
        const group = flag.helpGroup ?? 'FLAGS'
        groups.set(group, [...(groups.get(group) ?? []), name])
      }
      if (groups.size === 0) groups.set('FLAGS', [])
      out.set(`warden ${id.split(':').join(' ')}`, groups)
    }
  }
  return out
}

const doc = () => readFileSync(DOC, 'utf8')
const code = (cell: string) => /^`([^`]+)`$/.exec(cell)?.[1]

describe('docs/testing.md: every entry point with the tests that run it', () => {
  it('lists every CLI command and each of its flag groups, every flag of the group in its row, and nothing that does not exist', () => {
    const rows = tableUnder(doc(), '### CLI commands')
    const expected = commands()
    const problems: string[] = []
    const seen = new Set<string>()
    for (const { cells, line } of rows) {
      const [command, group, flags] = cells
      const name = code(command ?? '')
      const groups = name ? expected.get(name) : undefined
      if (!name || !groups) {
        problems.push(`line ${line}: ${command} is not a command of the CLI`)
        continue
      }
      const groupFlags = groups.get(group ?? '')
      if (!groupFlags) {
        problems.push(`line ${line}: ${name} has no flag group ${group} (it has ${[...groups.keys()].join(', ')})`)
        continue
      }
      seen.add(`${name} ${group}`)
      const named = new Set([...(flags ?? '').matchAll(/`--([\w-]+)`/g)].map((m) => m[1]!))
      for (const flag of groupFlags) if (!named.has(flag)) problems.push(`line ${line}: ${name} ${group} does not name --${flag}`)
      for (const flag of named) if (!groupFlags.includes(flag)) problems.push(`line ${line}: ${name} ${group} has no flag --${flag}`)
    }
    for (const [name, groups] of expected)
      for (const group of groups.keys()) if (!seen.has(`${name} ${group}`)) problems.push(`no row for ${name}, flag group ${group}`)
    expect(problems).toEqual([])
  })

  it('lists every HTTP route of the route table (src/server/routes/table.ts), and nothing else', () => {
    const rows = tableUnder(doc(), '### HTTP routes')
    const listed = rows.map(({ cells }) => `${code(cells[0] ?? '') ?? cells[0]} (${cells[1]})`)
    const routes = entryRoutes().map((route) => `${route.method} ${route.path} (${route.server})`)
    expect(
      listed.filter((route) => !routes.includes(route)),
      'rows for routes that do not exist',
    ).toEqual([])
    expect(
      routes.filter((route) => !listed.includes(route)),
      'routes with no row',
    ).toEqual([])
  })

  it('names, for every row, tests of its success path and of its refusals that exist in their files', () => {
    const problems: string[] = []
    const titles = new Map<string, string[]>()
    for (const { cells, line } of [...tableUnder(doc(), '### CLI commands'), ...tableUnder(doc(), '### HTTP routes')]) {
      const [success, refusals] = cells.slice(-2)
      if (references(success ?? '').length === 0) problems.push(`line ${line}: no test for the success path`)
      if (references(refusals ?? '').length === 0 && !/^none: /.test(refusals ?? ''))
        problems.push(`line ${line}: no test for the refusals (or "none: <why>")`)
      for (const { file, title } of references(`${success} ${refusals}`)) {
        if (!existsSync(join(ROOT, file))) {
          problems.push(`line ${line}: ${file} does not exist`)
          continue
        }
        if (!titles.has(file)) titles.set(file, titlesOf(file))
        const found = title.endsWith('…')
          ? titles.get(file)!.some((t) => t.startsWith(title.slice(0, -1)))
          : titles.get(file)!.includes(title)
        if (!found) problems.push(`line ${line}: ${file} has no test titled "${title}"`)
      }
    }
    expect(problems).toEqual([])
  })

  it('no route is registered around the table: src/server and src/chat pass no path literal to get/post/use', () => {
    const literal = /\.(get|post|put|patch|delete|all|use)\(\s*['"`]\//
    const offenders: string[] = []
    for (const dir of ['src/server', 'src/server/routes', 'src/chat']) {
      for (const file of readdirSync(join(ROOT, dir)).filter((f) => f.endsWith('.ts'))) {
        readFileSync(join(ROOT, dir, file), 'utf8')
          .split('\n')
          .forEach((text, index) => {
            if (literal.test(text) && !text.trim().startsWith('*') && !text.trim().startsWith('//'))
              offenders.push(`${dir}/${file}:${index + 1}: ${text.trim()}`)
          })
      }
    }
    expect(offenders).toEqual([])
  })
})
