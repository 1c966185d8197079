import { IDENTIFIER_PATTERN } from '../core/config-schema.js'

/** Every statement Warden runs is one of these: text with placeholders, values bound separately. */
export interface Sql {
  /** the builder's name: shows up in timings and errors, never the values */
  name: string
  text: string
  values: unknown[]
}

export const sql = (name: string, text: string, values: unknown[] = []): Sql => ({ name, text, values })

/**
 * Quotes an identifier for PostgreSQL. Callers pass names from config or the catalog; the
 * pattern check is a guard against a future caller passing something that never was validated.
 */
export function quoteIdent(name: string): string {
  if (!IDENTIFIER_PATTERN.test(name)) throw new Error(`refusing to quote unvalidated identifier ${JSON.stringify(name)}`)
  return `"${name.replace(/"/g, '""')}"`
}

/**
 * A string literal for the few places a value must be part of an expression that builders share
 * (a time zone checked against pg_timezone_names): everything else is a bind parameter.
 */
export const quoteLiteral = (value: string): string => `'${value.replace(/'/g, "''")}'`

export interface QualifiedName {
  schema: string
  name: string
}

export function parseQualifiedName(value: string, defaultSchema = 'public'): QualifiedName {
  const parts = value.split('.')
  return parts.length === 2 ? { schema: parts[0]!, name: parts[1]! } : { schema: defaultSchema, name: parts[0]! }
}

export const quoteQualified = (table: QualifiedName): string => `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`
