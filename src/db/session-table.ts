import type { SessionsConfig } from '../core/config.js'
import { DEFAULT_TARGET } from '../core/config-schema.js'
import { configError } from '../core/errors.js'
import type { Database } from './database.js'
import { explainTableLock } from './table-locks.js'
import { findRelation, hasUniqueIndexOn, indexFirstKeys, listColumns, listTables, schemaExists, timeZoneExists } from './queries/catalog.js'
import { parseQualifiedName, quoteIdent, quoteLiteral, quoteQualified, type QualifiedName } from './sql.js'

interface CatalogColumn {
  name: string
  type: string
  typeName: string
  category: string
  notNull: boolean
}

/**
 * The user's session table after it has been checked against the catalog: every name exists,
 * has a type Warden can work with, and is quoted. SQL builders take this, never raw config.
 */
export interface SessionTable {
  config: SessionsConfig
  /** the target (database) this table belongs to: a target and a table travel together */
  target: string
  /** the table's name in the configuration: the `table` label, what --table selects */
  label: string
  name: QualifiedName
  /** quoted schema.table */
  table: string
  /** quoted column names; optional ones are undefined when not mapped */
  id: string
  active?: string
  startedAt: string
  lastSeenAt?: string
  endedAt: string[]
  durationSeconds?: string
  group?: string
  owner?: string
  /** the relation's oid, for lock diagnostics */
  oid: string
  /** range/list partitioned: a row's ctid is unique only together with its partition (tableoid) */
  partitioned: boolean
  /** a unique index on id alone, and id NOT NULL: the id alone names one row, and keyset walks over it are exact */
  idUnique: boolean
  idNotNull: boolean
  /** an index leads with the silence column (lastSeenAt, else startedAt): sweeps can walk it */
  silenceIndexed: boolean
  /**
   * Quoted timestamp columns of type `timestamp without time zone`. Their values mean nothing
   * without a zone: they are read in `zone` when the mapping declares one (columnsTimeZone),
   * else in the server session's TimeZone, as PostgreSQL itself would cast them.
   */
  naiveColumns: Set<string>
  /** columnsTimeZone as a quoted SQL literal, checked against pg_timezone_names */
  zone?: string
}

/** Does an index key (column name or expression text) lead with this column? */
export function keyUsesColumn(key: string, column: string): boolean {
  return new RegExp(`(^|[^A-Za-z0-9_$])"?${column.replace(/\$/g, '\\$')}"?($|[^A-Za-z0-9_$])`).test(key)
}

type ColumnKind = 'any' | 'boolean' | 'timestamp' | 'number'

const EXPECTED: Record<ColumnKind, { test: (column: CatalogColumn) => boolean; text: string }> = {
  any: { test: () => true, text: 'any type' },
  boolean: { test: (c) => c.typeName === 'bool', text: 'boolean' },
  timestamp: { test: (c) => c.typeName === 'timestamptz' || c.typeName === 'timestamp', text: 'timestamp with or without time zone' },
  number: { test: (c) => c.category === 'N', text: 'a number (integer, numeric, real or double precision)' },
}

const RELKIND_NAMES: Record<string, string> = {
  v: 'a view',
  m: 'a materialized view',
  f: 'a foreign table',
  S: 'a sequence',
  i: 'an index',
  I: 'a partitioned index',
  c: 'a composite type',
  t: 'a TOAST table',
}

const describeColumns = (columns: CatalogColumn[]) => columns.map((c) => `${c.name} (${c.type})`).join(', ')

/**
 * Resolves the configured mapping against the catalog once, at start-up, so a typo is reported
 * with what the table really has, before any statement touches a row.
 */
export async function resolveSessionTable(
  db: Database,
  config: SessionsConfig & { name?: string },
  target: string = DEFAULT_TARGET,
): Promise<SessionTable> {
  const name = parseQualifiedName(config.table)
  try {
    return { ...(await resolve(db, config, name)), target, label: config.name ?? config.table }
  } catch (error) {
    // the catalog functions take a lock on the table too: a table someone else locks is named here already
    const [relation] = await db.rows<{ oid: string }>(findRelation(name.schema, name.name)).catch(() => [])
    throw relation ? await explainTableLock(db, { oid: String(relation.oid), name: `${name.schema}.${name.name}` }, error) : error
  }
}

async function resolve(db: Database, config: SessionsConfig, name: QualifiedName): Promise<Omit<SessionTable, 'target' | 'label'>> {
  const [relation] = await db.rows<{ oid: string; relkind: string }>(findRelation(name.schema, name.name))
  if (!relation) {
    const tables = await db.rows<{ name: string }>(listTables(name.schema))
    const schemaFound = tables.length > 0 || ((await db.rows<{ exists: boolean }>(schemaExists(name.schema)))[0]?.exists ?? false)
    throw configError(
      `sessions.table = "${config.table}": no table ${name.schema}.${name.name} in this database` +
        (tables.length
          ? `; schema ${name.schema} has: ${tables.map((t) => t.name).join(', ')}`
          : schemaFound
            ? `; schema ${name.schema} has no tables`
            : `; schema ${name.schema} does not exist`),
    )
  }
  if (relation.relkind !== 'r' && relation.relkind !== 'p') {
    const kind = RELKIND_NAMES[relation.relkind] ?? `a relation of kind ${relation.relkind}`
    throw configError(
      `sessions.table = "${config.table}": ${name.schema}.${name.name} is ${kind}, not a table; map the table it reads from (Warden UPDATEs rows)`,
    )
  }
  const columns = await db.rows<CatalogColumn>(listColumns(relation.oid))
  const byName = new Map(columns.map((column) => [column.name, column]))

  const check = (key: string, column: string | undefined, kind: ColumnKind): string | undefined => {
    if (column === undefined) return undefined
    const found = byName.get(column)
    if (!found) {
      throw configError(
        `sessions.columns.${key} = "${column}": ${name.schema}.${name.name} has no column ${column}; it has: ${describeColumns(columns)}`,
      )
    }
    if (!EXPECTED[kind].test(found)) {
      throw configError(`sessions.columns.${key} = "${column}": column ${column} is ${found.type}, expected ${EXPECTED[kind].text}`)
    }
    return quoteIdent(column)
  }

  const { columns: mapped } = config
  refuseDoubleAssignments(config)
  const table: Omit<SessionTable, 'target' | 'label'> = {
    config,
    name,
    table: quoteQualified(name),
    oid: String(relation.oid),
    partitioned: relation.relkind === 'p',
    id: check('id', mapped.id, 'any')!,
    active: check('active', mapped.active, 'boolean'),
    startedAt: check('startedAt', mapped.startedAt, 'timestamp')!,
    lastSeenAt: check('lastSeenAt', mapped.lastSeenAt, 'timestamp'),
    endedAt: mapped.endedAt.map((column, index) => check(`endedAt[${index}]`, column, 'timestamp')!),
    durationSeconds: check('durationSeconds', mapped.durationSeconds, 'number'),
    group: check('group', mapped.group, 'any'),
    owner: check('owner', mapped.owner, 'any'),
    idUnique: false,
    idNotNull: byName.get(mapped.id)?.notNull ?? false,
    silenceIndexed: false,
    naiveColumns: new Set(
      [mapped.startedAt, mapped.lastSeenAt, ...mapped.endedAt]
        .filter((column): column is string => column !== undefined && byName.get(column)?.typeName === 'timestamp')
        .map(quoteIdent),
    ),
  }
  if (config.columnsTimeZone !== undefined) {
    const [zone] = await db.rows<{ exists: boolean }>(timeZoneExists(config.columnsTimeZone))
    if (!zone?.exists) {
      throw configError(
        `sessions.columnsTimeZone = "${config.columnsTimeZone}": not a time zone this server knows (see pg_timezone_names), e.g. America/New_York or UTC`,
      )
    }
    table.zone = quoteLiteral(config.columnsTimeZone)
  }
  const [unique] = await db.rows<{ unique: boolean }>(hasUniqueIndexOn(relation.oid, mapped.id))
  table.idUnique = unique?.unique ?? false
  const keys = await db.rows<{ firstKey: string }>(indexFirstKeys(relation.oid))
  table.silenceIndexed = keys.some((index) => keyUsesColumn(index.firstKey, mapped.lastSeenAt ?? mapped.startedAt))
  return table
}

/**
 * A close sets active, every endedAt column and the duration in one UPDATE: a column named twice
 * there would pass every read (dry runs included) and fail only the apply, with PostgreSQL's
 * "multiple assignments to same column".
 */
function refuseDoubleAssignments(config: SessionsConfig): void {
  const { columns } = config
  const assigned: Array<[string, string | undefined]> = [
    ['active', columns.active],
    ...columns.endedAt.map((column, index): [string, string] => [`endedAt[${index}]`, column]),
    ['durationSeconds', columns.durationSeconds],
  ]
  const seen = new Map<string, string>()
  for (const [key, column] of assigned) {
    if (column === undefined) continue
    const earlier = seen.get(column)
    if (earlier !== undefined) {
      throw configError(
        `sessions.columns.${key} = "${column}": column ${column} is already mapped as ${earlier}; a close sets each of active, endedAt and durationSeconds once, so each needs its own column`,
      )
    }
    seen.set(column, key)
  }
}
