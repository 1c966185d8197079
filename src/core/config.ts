import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { ZodDefault, ZodEffects, ZodObject, ZodOptional, type ZodIssue, type ZodTypeAny } from 'zod'
import { configSchema, DEFAULT_SESSIONS, durationSchema, ENV_KEYS, type WardenConfig } from './config-schema.js'
import { DURATION_EXPECTED } from './duration.js'
import { configError, usageError } from './errors.js'
import { redactText, redactUrl } from './urls.js'

export type {
  WardenConfig,
  SessionsConfig,
  DatabaseConfig,
  TargetConfig,
  TableConfig,
  ChecksConfig,
  PrometheusConfig,
  AppMapping,
} from './config-schema.js'

export const DEFAULT_CONFIG_FILE = 'warden.config.yaml'

/** A value given on the command line, with the flag's name so errors can point at it. */
export interface FlagValue {
  key: string
  flag: string
  value: unknown
}

export interface LoadConfigOptions {
  /** --config; otherwise WARDEN_CONFIG; otherwise ./warden.config.yaml when it exists */
  configPath?: string
  flags?: FlagValue[]
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export interface LoadedConfig {
  config: WardenConfig
  /** where the file layer came from, if any */
  configFile?: string
  /** config key → human description of where its value came from */
  sources: Map<string, string>
  /**
   * With `targets`, the single-table flags (--table, --orphan-after) do not set config keys:
   * --table selects one of the configured tables, --orphan-after overrides the selected one's.
   */
  tableFlags: { table?: string; orphanAfter?: { seconds: number; flag: string } }
}

type Tree = Record<string, unknown>

/** A mapping is one piece of knowledge: a file that maps other columns must not inherit ours. */
const REPLACED_WHOLE = new Set(['sessions.columns'])

const isPlainObject = (value: unknown): value is Tree => typeof value === 'object' && value !== null && !Array.isArray(value)

function setPath(tree: Tree, key: string, value: unknown): void {
  const parts = key.split('.')
  let node = tree
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(node[part])) node[part] = {}
    node = node[part] as Tree
  }
  node[parts[parts.length - 1]!] = value
}

function getPath(tree: unknown, path: ReadonlyArray<string | number>): unknown {
  let node = tree
  for (const part of path) {
    if (!isPlainObject(node) && !Array.isArray(node)) return undefined
    node = (node as Record<string | number, unknown>)[part]
  }
  return node
}

/** Deep-merges `layer` into `target`, recording the source of every leaf it sets. */
function mergeLayer(target: Tree, layer: Tree, source: string, sources: Map<string, string>, prefix = ''): void {
  for (const [name, value] of Object.entries(layer)) {
    if (value === undefined) continue
    const key = prefix ? `${prefix}.${name}` : name
    if (isPlainObject(value) && !REPLACED_WHOLE.has(key)) {
      if (!isPlainObject(target[name])) target[name] = {}
      mergeLayer(target[name] as Tree, value, source, sources, key)
    } else {
      target[name] = value
      for (const existing of [...sources.keys()]) if (existing.startsWith(`${key}.`)) sources.delete(existing)
      sources.set(key, source)
    }
  }
}

function readConfigFile(path: string, explicit: boolean): Tree | undefined {
  if (!existsSync(path)) {
    if (explicit) throw configError(`config file ${path} does not exist`)
    return undefined
  }
  let parsed: unknown
  try {
    parsed = parseYaml(readFileSync(path, 'utf8'))
  } catch (error) {
    throw configError(`config file ${path} is not valid YAML: ${(error as Error).message.split('\n')[0]!.replace(/:$/, '')}`)
  }
  if (parsed === null || parsed === undefined) return {}
  if (!isPlainObject(parsed)) throw configError(`config file ${path} must hold a mapping of keys at the top level`)
  return parsed
}

function sourceOf(sources: Map<string, string>, path: string): string | undefined {
  for (let key = path; key; key = key.includes('.') ? key.slice(0, key.lastIndexOf('.')) : '') {
    const source = sources.get(key)
    if (source) return source
  }
  return undefined
}

/** The keys the schema allows under a path, for "unknown key" messages. */
function knownKeys(path: ReadonlyArray<string | number>): string[] {
  const unwrap = (schema: ZodTypeAny): ZodTypeAny => {
    for (;;) {
      if (schema instanceof ZodDefault || schema instanceof ZodOptional) schema = (schema._def as { innerType: ZodTypeAny }).innerType
      else if (schema instanceof ZodEffects) schema = (schema._def as { schema: ZodTypeAny }).schema
      else return schema
    }
  }
  let schema: ZodTypeAny | undefined = configSchema
  for (const part of path) {
    const node = unwrap(schema)
    schema = node instanceof ZodObject ? (node.shape as Record<string, ZodTypeAny>)[String(part)] : undefined
    if (!schema) return []
  }
  const node = unwrap(schema)
  return node instanceof ZodObject ? Object.keys(node.shape as Record<string, ZodTypeAny>) : []
}

function describeIssue(issue: ZodIssue, raw: Tree, sources: Map<string, string>): string {
  const key = issue.path.filter((part) => typeof part === 'string').join('.')
  const shownKey =
    issue.path
      .map((part) => (typeof part === 'number' ? `[${part}]` : `.${part}`))
      .join('')
      .replace(/^\./, '') || '(top level)'
  if (issue.code === 'unrecognized_keys') {
    const first = `${key ? `${key}.` : ''}${issue.keys[0]}`
    // An unknown key that holds a mapping has sources only for its leaves.
    const where = sourceOf(sources, first) ?? [...sources].find(([k]) => k.startsWith(`${first}.`))?.[1]
    const allowed = knownKeys(issue.path)
    return (
      `${issue.keys.map((k) => (key ? `${key}.${k}` : k)).join(', ')}: unknown key${issue.keys.length > 1 ? 's' : ''}${where ? ` (from ${where})` : ''}` +
      (allowed.length ? `; expected one of: ${allowed.join(', ')}` : '')
    )
  }
  const value = getPath(raw, issue.path)
  const where = sourceOf(sources, key)
  const shownValue = value === undefined ? 'missing' : `= ${JSON.stringify(redactValue(key, value))}`
  return `${shownKey} ${shownValue}${where ? ` (from ${where})` : ''}: ${issue.message}`
}

const SECRET_KEY = /token|password|secret/i

/** Config values as they may appear in messages and logs: secrets hidden, URL passwords masked. */
export function redactValue(key: string, value: unknown): unknown {
  if (SECRET_KEY.test(key)) return '*****'
  // Prometheus headers carry Authorization / tenant tokens: every value is a secret
  if (key === 'prometheus.headers' || key.startsWith('prometheus.headers.'))
    return isPlainObject(value) ? Object.fromEntries(Object.keys(value).map((name) => [name, '*****'])) : '*****'
  if (key === 'prometheus' && isPlainObject(value) && isPlainObject(value.headers))
    return redactValue('', { ...value, headers: redactValue('prometheus.headers', value.headers) })
  if ((key === 'database.url' || key === 'prometheus.url') && typeof value === 'string') return redactUrl(value)
  // A URL typed in the wrong place (`database: postgres://u:pw@h/db`) is still a URL with a password.
  if (typeof value === 'string' || isPlainObject(value) || Array.isArray(value)) return JSON.parse(redactSecrets(JSON.stringify(value)))
  return value
}

const redactSecrets = (json: string) => redactText(json)

export { redactUrl }

/**
 * Builds the one typed config object: flag > environment > config file > defaults.
 * Every rejected value is reported with its key, its value, where it came from and what was expected.
 */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  const sources = new Map<string, string>()
  const raw: Tree = {}
  mergeLayer(raw, { sessions: DEFAULT_SESSIONS }, 'defaults', sources)

  const explicitPath = options.configPath ?? env.WARDEN_CONFIG
  const configFile = resolve(cwd, explicitPath ?? DEFAULT_CONFIG_FILE)
  const fileTree = readConfigFile(configFile, explicitPath !== undefined)
  if (fileTree) mergeLayer(raw, expandEnvReferences(fileTree, env, configFile), `config file ${configFile}`, sources)
  const fleet = raw.targets !== undefined

  const envTree: Tree = {}
  const envSources = new Map<string, string>()
  for (const { env: name, key } of [...ENV_KEYS].reverse()) {
    const value = env[name]
    if (value === undefined || value === '') continue
    setPath(envTree, key, value)
    envSources.set(key, `env ${name}`)
  }
  mergeLayer(raw, envTree, 'env', sources)
  for (const [key, source] of envSources) sources.set(key, source)

  const tableFlags: LoadedConfig['tableFlags'] = {}
  for (const flag of options.flags ?? []) {
    if (flag.value === undefined) continue
    if (fleet && flag.key.startsWith('sessions.')) {
      tableFlags.table =
        flag.key === 'sessions.table' ? (typeof flag.value === 'string' ? flag.value : JSON.stringify(flag.value)) : tableFlags.table
      if (flag.key === 'sessions.orphanAfter') {
        const parsed = durationSchema.safeParse(flag.value)
        if (!parsed.success) throw usageError(`${flag.flag} ${JSON.stringify(flag.value)}: expected ${DURATION_EXPECTED}`)
        tableFlags.orphanAfter = { seconds: parsed.data, flag: flag.flag }
      }
      continue
    }
    const layer: Tree = {}
    setPath(layer, flag.key, flag.value)
    mergeLayer(raw, layer, `flag ${flag.flag}`, sources)
  }

  if (fleet) {
    const single = [...sources].filter(([key, source]) => key.startsWith('sessions') && source !== 'defaults')
    if (single.length > 0) {
      const [key, source] = single[0]!
      throw configError(
        `${key} (from ${source}) and targets are two ways to name the session tables; with targets, map each table under targets[].sessions`,
      )
    }
    inheritTargetDefaults(raw)
  }
  const result = configSchema.safeParse(raw)
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  - ${describeIssue(issue, raw, sources)}`)
    // A bad flag is a usage error (64); anything that came from a file or the environment is config (78).
    const fromFlagsOnly = lines.every((line) => line.includes('(from flag '))
    const message = `invalid ${fromFlagsOnly ? 'option' : 'configuration'}:\n${lines.join('\n')}`
    throw fromFlagsOnly ? usageError(message) : configError(message)
  }
  return { config: result.data, configFile: fileTree ? configFile : undefined, sources, tableFlags }
}

/**
 * `${NAME}` in a config file is the environment variable NAME, so a file can name a password
 * without holding it. An unset variable is an error naming the key, never an empty string.
 */
function expandEnvReferences(tree: Tree, env: NodeJS.ProcessEnv, file: string): Tree {
  const walk = (value: unknown, path: string): unknown => {
    if (typeof value === 'string') {
      return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_whole, name: string) => {
        const found = env[name]
        if (found === undefined || found === '') {
          throw configError(`${path} = "${value}" (from config file ${file}): environment variable ${name} is not set`)
        }
        return found
      })
    }
    if (Array.isArray(value)) return value.map((item, index) => walk(item, `${path}[${index}]`))
    if (isPlainObject(value))
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(item, path ? `${path}.${key}` : key)]))
    return value
  }
  return walk(tree, '') as Tree
}

const deepMerge = (base: unknown, over: unknown): unknown => {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over
  const out: Tree = { ...base }
  for (const [key, value] of Object.entries(over)) out[key] = deepMerge(base[key], value)
  return out
}

/** Every target starts from the top-level `database` settings (not its URL) and `checks` thresholds. */
function inheritTargetDefaults(raw: Tree): void {
  if (!Array.isArray(raw.targets)) return
  const { url: defaultUrl, ...database } = isPlainObject(raw.database) ? raw.database : {}
  raw.targets = raw.targets.map((target: unknown) => {
    if (!isPlainObject(target)) return target
    return {
      ...target,
      database: deepMerge({ ...database, ...(defaultUrl === undefined ? {} : { url: defaultUrl }) }, target.database ?? {}),
      checks: deepMerge(raw.checks ?? {}, target.checks ?? {}),
    }
  })
}
