import type { TableConfig, TargetConfig, WardenConfig } from '../core/config.js'
import { configError } from '../core/errors.js'

export interface TableRef {
  target: TargetConfig
  table: TableConfig
}

export interface Selection {
  /** --target: a target's name */
  target?: string
  /** --table: a table's name, or its [schema.]table */
  table?: string
  /** how the caller spells the two in messages: --target/--table (CLI, the default) or target/table (API) */
  spelling?: { target: string; table: string }
}

const CLI = { target: '--target', table: '--table' }

const qualified = (table: string) => (table.includes('.') ? table : `public.${table}`)
const refName = (ref: TableRef) => `${ref.target.name}/${ref.table.name}`

/** Does `wanted` name this table, by its configured name or by its [schema.]table? */
export const tableMatches = (table: TableConfig, wanted: string) => table.name === wanted || qualified(table.table) === qualified(wanted)

/**
 * The tables a selection names: every table of every target when nothing is selected. A target
 * or table the configuration does not have is a configuration error (78) that lists what it has.
 */
export function selectTables(config: Pick<WardenConfig, 'targets'>, selection: Selection = {}): TableRef[] {
  let targets = config.targets
  if (selection.target !== undefined) {
    targets = targets.filter((target) => target.name === selection.target)
    if (targets.length === 0) {
      throw configError(
        `${(selection.spelling ?? CLI).target} ${JSON.stringify(selection.target)}: no such target; the configuration has: ${config.targets.map((t) => t.name).join(', ')}`,
      )
    }
  }
  let refs = targets.flatMap((target) => target.sessions.map((table) => ({ target, table })))
  if (selection.table !== undefined) {
    const all = refs
    refs = refs.filter((ref) => tableMatches(ref.table, selection.table!))
    if (refs.length === 0) {
      throw configError(
        `--table ${JSON.stringify(selection.table)}: no such session table; the configuration has: ${all.map(refName).join(', ')}`,
      )
    }
  }
  return refs
}

/** Exactly one table: what a sweep, close, list or stats works on. */
export function selectTable(config: Pick<WardenConfig, 'targets'>, selection: Selection = {}): TableRef {
  const refs = selectTables(config, selection)
  if (refs.length > 1) {
    throw configError(
      `this configuration has ${refs.length} session tables (${refs.map(refName).join(', ')}); pick one with ${(selection.spelling ?? CLI).target} and ${(selection.spelling ?? CLI).table}`,
    )
  }
  return refs[0]!
}

export function findTarget(config: Pick<WardenConfig, 'targets'>, name: string): TargetConfig {
  const target = config.targets.find((t) => t.name === name)
  if (!target)
    throw configError(`no target named ${JSON.stringify(name)}; the configuration has: ${config.targets.map((t) => t.name).join(', ')}`)
  return target
}
