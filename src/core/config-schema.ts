import { z } from 'zod'
import { DURATION_EXPECTED, parseDuration } from './duration.js'
import { databaseUrlProblem, hostProblem, httpUrlProblem } from './urls.js'

/**
 * PostgreSQL would accept almost anything between double quotes, but a mapping key that needs
 * quoting to be valid is far more often a typo or an injection attempt than a real column.
 * Warden still quotes every identifier it emits; this pattern is the first line, not the only one.
 */
export const IDENTIFIER_PATTERN = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/
export const IDENTIFIER_EXPECTED = 'a plain identifier: letters, digits, _ or $, not starting with a digit, at most 63 characters'

const identifier = z.string({ invalid_type_error: `expected ${IDENTIFIER_EXPECTED}` }).regex(IDENTIFIER_PATTERN, {
  message: `expected ${IDENTIFIER_EXPECTED}`,
})

const qualifiedTable = z.string({ invalid_type_error: 'expected a table name such as public.conversation_sessions' }).refine((value) => {
  const parts = value.split('.')
  return parts.length <= 2 && parts.every((part) => IDENTIFIER_PATTERN.test(part))
}, 'expected [schema.]table with plain identifiers, e.g. public.conversation_sessions')

/** Durations arrive as "2h" from YAML/env/flags/API bodies; they are carried as seconds from here on. */
export const durationSchema = z
  .union([z.string(), z.number()], { invalid_type_error: `expected ${DURATION_EXPECTED}` })
  .transform((value, ctx) => {
    const seconds = parseDuration(value)
    if (seconds === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected ${DURATION_EXPECTED}` })
      return z.NEVER
    }
    return seconds
  })
const duration = durationSchema

/** Env vars and flags are strings; accept "500" where a count is expected, but not "5x". */
const count = (min: number, max: number) =>
  z.preprocess(
    (value) => (typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value),
    z
      .number({ invalid_type_error: `expected an integer from ${min} to ${max}` })
      .int(`expected an integer from ${min} to ${max}`)
      .min(min, `expected an integer from ${min} to ${max}`)
      .max(max, `expected an integer from ${min} to ${max}`),
  )

const columnsSchema = z
  .object({
    id: identifier.default('session_id'),
    active: identifier.optional(),
    startedAt: identifier,
    lastSeenAt: identifier.optional(),
    endedAt: z
      .union([identifier, z.array(identifier).min(1, 'expected at least one column name')])
      .optional()
      .transform((value) => (value === undefined ? [] : Array.isArray(value) ? value : [value])),
    durationSeconds: identifier.optional(),
    group: identifier.optional(),
    /** who a session belongs to (user or agent id): lets doctor find duplicate open sessions per owner */
    owner: identifier.optional(),
  })
  .strict()

/** Target and table names become label values and CLI arguments: short, plain, no spaces. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const resourceName = z
  .string({ invalid_type_error: 'expected a name such as chat-prod' })
  .regex(NAME_PATTERN, 'expected a name of letters, digits, _ . or - (at most 63), such as chat-prod')

const sessionsFields = {
  table: qualifiedTable,
  columns: columnsSchema,
  orphanAfter: duration.default('2h'),
  /**
   * What endedAt gets when Warden closes a session: the moment it closed it ("now", what the
   * post-mortem's fix did) or the last sign of life ("lastSeen"), which keeps per-day average
   * durations honest when orphans are days old.
   */
  closeTimestamp: z.enum(['now', 'lastSeen']).default('now'),
  /**
   * The zone an application writes `timestamp without time zone` columns in, when it is not the
   * server's TimeZone (an app server in New York, a database in UTC): without it, sessions
   * active a minute ago look silent for five hours. Ignored for timestamptz columns.
   */
  columnsTimeZone: z
    .string({ invalid_type_error: 'expected an IANA time zone name such as America/New_York' })
    .regex(/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/, 'expected an IANA time zone name such as America/New_York')
    .optional(),
}

function requireOpenTest(sessions: { columns: { active?: string; endedAt: string[] } }, ctx: z.RefinementCtx): void {
  if (!sessions.columns.active && sessions.columns.endedAt.length === 0) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: ['columns'],
      message:
        'expected columns.active (a boolean column) or columns.endedAt (NULL while the session is open): Warden needs one of them to tell open sessions from closed ones',
    })
  }
}

export const sessionsSchema = z.object(sessionsFields).strict().superRefine(requireOpenTest)

/** One session table of a target: the single-table mapping, plus the name it goes by (`--table`, the `table` label). */
export const tableSchema = z
  .object({
    /** default: `table` as written */
    name: resourceName.optional(),
    ...sessionsFields,
  })
  .strict()
  .superRefine(requireOpenTest)

/** warn/crit pair; a warn above crit would make "critical" unreachable, so it is refused. */
function thresholds(
  value: z.ZodType<number, z.ZodTypeDef, unknown>,
  defaults: { warn: string | number; crit: string | number },
  unit: string,
) {
  return z
    .object({ warn: value.default(defaults.warn), crit: value.default(defaults.crit) })
    .strict()
    .default({})
    .superRefine((pair, ctx) => {
      if (pair.warn > pair.crit) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['warn'], message: `expected warn ≤ crit (crit is ${pair.crit}${unit})` })
      }
    })
}

const percent = z
  .number({ invalid_type_error: 'expected a percentage from 1 to 100' })
  .min(1, 'expected a percentage from 1 to 100')
  .max(100, 'expected a percentage from 1 to 100')

const checksSchema = z
  .object({
    /** checks doctor skips (by name) */
    disabled: z.array(z.string()).default([]),
    /** open sessions silent past orphanAfter; the post-mortem alerts above 5 */
    orphanedSessions: thresholds(count(0, Number.MAX_SAFE_INTEGER), { warn: 1, crit: 6 }, ' sessions'),
    /** age of the oldest idle-in-transaction backend: an app holding a transaction across an LLM call */
    idleInTransaction: thresholds(duration, { warn: '10s', crit: '60s' }, ' s'),
    longTransactions: thresholds(duration, { warn: '1m', crit: '10m' }, ' s'),
    /** how long a backend has been waiting on a lock */
    blockedBackends: thresholds(duration, { warn: '5s', crit: '30s' }, ' s'),
    /** percentage of usable connection slots in use */
    connectionHeadroom: thresholds(percent, { warn: 80, crit: 95 }, '%'),
    /**
     * How long the application's pool waits for a connection (SQLAlchemy's pool_timeout is 30 s):
     * an idle-in-transaction timeout longer than that lets a leaked transaction starve the pool.
     */
    appPoolWait: duration.default('30s'),
    /** an llm_requests-like table whose rows point at sessions: doctor looks for rows with no session */
    costRows: z.object({ table: qualifiedTable, sessionId: identifier }).strict().optional(),
    /** the orphan-index check stays quiet below this many rows */
    orphanIndexMinRows: count(0, Number.MAX_SAFE_INTEGER).default(10_000),
    /** app-* checks (Prometheus): average used / max connections of an application's pool over prometheus.window, in % */
    appPoolUsed: thresholds(percent, { warn: 80, crit: 95 }, '%'),
    /** app-pool-wait: p99 time an application waits for a pooled connection */
    appPoolWaitP99: thresholds(duration, { warn: '100ms', crit: '1s' }, ' s'),
    /** app-connection-held-long: p95 time a connection stays checked out; seconds mean it is held across something else */
    appHeldP95: thresholds(duration, { warn: '1s', crit: '5s' }, ' s'),
    /** app-held-idle: connections checked out while PostgreSQL shows them idle, as % of the pool's max, averaged over the window */
    appHeldIdle: thresholds(percent, { warn: 25, crit: 50 }, '%'),
    /** app-llm-errors: share of GenAI operations that failed, in % */
    appLlmErrors: thresholds(percent, { warn: 5, crit: 20 }, '%'),
  })
  .strict()
  .default({})

/** A 5- or 6-field cron expression as node-cron takes it; checked properly where it is scheduled. */
const cronExpression = z
  .string({ invalid_type_error: 'expected a cron expression such as "*/5 * * * *"' })
  .refine(
    (value) => [5, 6].includes(value.trim().split(/\s+/).length),
    'expected a cron expression with 5 or 6 fields, such as "*/5 * * * *"',
  )

const serverSchema = z
  .object({
    host: z
      .string()
      .superRefine((value, ctx) => {
        const problem = hostProblem(value)
        if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem })
      })
      .default('127.0.0.1'),
    port: count(0, 65_535).default(9477),
    /**
     * Bearer token for the mutating admin routes. Without one they are off. A secret: give it
     * through WARDEN_ADMIN_TOKEN rather than a file that lands in a repository; never logged.
     */
    adminToken: z.string().min(16, 'expected at least 16 characters (a random token)').optional(),
    /** how often database-derived gauges are refreshed; scrapes read the cache */
    collectInterval: duration.default('15s'),
    /** deadline for one collection; a slower database leaves the last values in place */
    collectTimeout: duration.default('5s'),
    /** a scrape that finds a target's gauges older than this refreshes them first */
    freshFor: duration.default('1s'),
    /** how long a scrape waits for that refresh before it serves the values it has (with their age) */
    scrapeWait: duration.default('250ms'),
    /** mutating API calls allowed per minute (all clients together) */
    mutationsPerMinute: count(1, 10_000).default(30),
    /** failed admin-token attempts allowed per client address and minute; more get 429 until the minute passes */
    authFailuresPerMinute: count(1, 10_000).default(10),
  })
  .strict()
  .default({})

const schedulerSchema = z
  .object({
    /** orphan sweep schedule; null turns it off */
    sweep: cronExpression.nullable().default('*/5 * * * *'),
    /** Mutations default to a dry run: the scheduled sweep only reports until this is true. */
    sweepApply: z.boolean().default(false),
    /** accepted and ignored: the checks run with the metrics collectors (activity checks every round, the rest once a minute) */
    doctor: cronExpression.nullable().default('* * * * *'),
    /** random delay before each run, so replicas do not hit the database at the same instant */
    jitter: z.union([z.literal(0), duration]).default(0),
  })
  .strict()
  .default({})

/** Label values (a Prometheus job, an application_name): anything printable, quoted where they are used. */
const labelValueSchema = z
  .string({ invalid_type_error: 'expected a name such as chat-api' })
  .min(1, 'expected a name such as chat-api')
  .max(200, 'expected at most 200 characters')
  .refine((value) => ![...value].some((char) => char.charCodeAt(0) < 0x20), 'expected printable characters only')

/**
 * The user's Prometheus, for the app-* checks: the applications' own pool and GenAI metrics.
 * Header values (Authorization, X-Scope-OrgID) are secrets: never logged or shown.
 */
const prometheusSchema = z
  .object({
    url: z
      .string({ invalid_type_error: 'expected an http:// or https:// URL such as http://prometheus:9090' })
      .superRefine((value, ctx) => {
        const problem = httpUrlProblem(value)
        if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem })
      }),
    headers: z
      .record(
        z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected an HTTP header name'),
        z.string({ invalid_type_error: 'expected a header value (a string)' }).regex(/^[^\r\n]*$/, 'expected a single-line header value'),
      )
      .default({}),
    /** the span the app-* checks look back over */
    window: duration.default('10m'),
    /** deadline of each query */
    timeout: duration.default('10s'),
  })
  .strict()

/** Which PostgreSQL application_name a Prometheus job's connections carry (app-held-idle); unmapped jobs match by name. */
const appSchema = z.object({ job: labelValueSchema, applicationName: z.string().min(1).max(63) }).strict()

/** The conversation_sessions shape of SPEC.md: the default when no mapping is configured. */
export const DEFAULT_SESSIONS = {
  table: 'public.conversation_sessions',
  columns: {
    id: 'session_id',
    active: 'is_active',
    startedAt: 'session_start',
    lastSeenAt: 'last_activity_at',
    endedAt: ['session_end', 'ended_at'],
    durationSeconds: 'duration_seconds',
    group: 'agent_role',
  },
}

const databaseUrl = z
  .string({ invalid_type_error: 'expected a postgres:// connection URL' })
  .min(1, 'expected a postgres:// connection URL')
  .superRefine((value, ctx) => {
    const problem = databaseUrlProblem(value)
    if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem })
  })

/**
 * A database Warden watches, with its session tables. `database` and `checks` default to the
 * top-level ones (the loader merges them in before validation, key by key).
 */
const targetSchema = z
  .object({
    name: resourceName,
    /** an env reference such as ${CHAT_DATABASE_URL} keeps the password out of the file */
    databaseUrl: databaseUrl.optional(),
    database: z.lazy(() => databaseSchema),
    sessions: z.array(tableSchema).min(1, 'expected at least one session table'),
    checks: z.lazy(() => checksSchema),
  })
  .strict()

const databaseSchema = z
  .object({
    url: databaseUrl.optional(),
    applicationName: z.string().min(1).max(63).default('warden'),
    connectTimeout: duration.default('5s'),
    statementTimeout: duration.default('30s'),
    /**
     * lock_timeout of every Warden statement: when another session holds a table itself (DDL,
     * VACUUM FULL, LOCK TABLE), Warden stops and names it instead of queueing behind it (and
     * making every later query of that table queue behind Warden).
     */
    lockTimeout: duration.default('3s'),
    poolMax: count(1, 100).default(4),
  })
  .strict()
  .default({})

export const configSchema = z
  .object({
    database: databaseSchema,
    /**
     * The databases Warden watches and their session tables. Without it, `database` and
     * `sessions` are one target named "default" with one table.
     */
    targets: z.array(targetSchema).min(1, 'expected at least one target').optional(),
    /** Warden's own tables (audit log, later the reference chat schema) live here. */
    wardenSchema: identifier.default('warden'),
    sessions: sessionsSchema.default(DEFAULT_SESSIONS),
    sweep: z
      .object({
        /** set (file, WARDEN_BATCH_SIZE, --batch-size): every batch is this many rows; unset: batches adapt toward batchTarget */
        batchSize: count(1, 100_000).optional(),
        /** how long an adaptive batch should take, i.e. how long it holds its row locks */
        batchTarget: duration.default('300ms'),
        maxRows: count(1, Number.MAX_SAFE_INTEGER).optional(),
      })
      .strict()
      .default({}),
    checks: checksSchema,
    server: serverSchema,
    scheduler: schedulerSchema,
    prometheus: prometheusSchema.optional(),
    apps: z.array(appSchema).default([]),
  })
  .strict()
  .superRefine(fleetRules)
  .transform(normalizeTargets)

interface ParsedConfig {
  targets?: Array<z.output<typeof targetSchema>>
  database: z.output<typeof databaseSchema>
  sessions: z.output<typeof sessionsSchema>
  checks: z.output<typeof checksSchema>
}
type ParsedTarget = NonNullable<ParsedConfig['targets']>[number]

/** Names that must be unique, and URLs a target cannot do without. */
function fleetRules(config: Pick<ParsedConfig, 'targets'>, ctx: z.RefinementCtx): void {
  const targets = config.targets ?? []
  const seen = new Map<string, number>()
  targets.forEach((target, index) => {
    const earlier = seen.get(target.name)
    if (earlier !== undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['targets', index, 'name'],
        message: `expected a unique name; targets[${earlier}] is also "${target.name}"`,
      })
    }
    seen.set(target.name, index)
    if (!target.databaseUrl && !target.database.url) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['targets', index, 'databaseUrl'],
        message: 'expected a postgres:// URL for this target (or database.url as the default for every target)',
      })
    }
    const names = new Map<string, number>()
    const tables = new Map<string, number>()
    target.sessions.forEach((table, tableIndex) => {
      const name = table.name ?? table.table
      const qualified = table.table.includes('.') ? table.table : `public.${table.table}`
      const path = ['targets', index, 'sessions', tableIndex]
      const sameName = names.get(name)
      if (sameName !== undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [...path, 'name'],
          message: `expected a unique table name in target "${target.name}"; sessions[${sameName}] is also "${name}"`,
        })
      }
      const sameTable = tables.get(qualified)
      if (sameTable !== undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [...path, 'table'],
          message: `${qualified} is listed twice in target "${target.name}" (also sessions[${sameTable}]); map it once`,
        })
      }
      names.set(name, tableIndex)
      tables.set(qualified, tableIndex)
    })
  })
}

export interface TableConfig extends z.output<typeof sessionsSchema> {
  /** the `table` label and what `--table` selects */
  name: string
}

export interface TargetConfig {
  name: string
  database: z.output<typeof databaseSchema>
  sessions: TableConfig[]
  checks: z.output<typeof checksSchema>
}

/** The single-table form is the fleet of one: a target named "default" with one table. */
export const DEFAULT_TARGET = 'default'

function normalizeTargets<C extends Pick<ParsedConfig, 'database' | 'sessions' | 'checks'> & { targets?: ParsedTarget[] }>(
  config: C,
): Omit<C, 'targets'> & { targets: TargetConfig[]; fleet: boolean } {
  const targets: TargetConfig[] = config.targets
    ? config.targets.map((target) => ({
        name: target.name,
        database: { ...target.database, url: target.databaseUrl ?? target.database.url },
        sessions: target.sessions.map(({ name, ...table }) => ({ ...table, name: name ?? table.table })),
        checks: target.checks,
      }))
    : [
        {
          name: DEFAULT_TARGET,
          database: config.database,
          sessions: [{ ...config.sessions, name: config.sessions.table }],
          checks: config.checks,
        },
      ]
  return { ...config, targets, fleet: config.targets !== undefined }
}

export type WardenConfig = z.output<typeof configSchema>
export type SessionsConfig = WardenConfig['sessions']
export type DatabaseConfig = WardenConfig['database']
export type ChecksConfig = WardenConfig['checks']
export type PrometheusConfig = z.output<typeof prometheusSchema>
export type AppMapping = z.output<typeof appSchema>

/**
 * Environment variables Warden reads, and the config key each one sets. One table so the loader
 * and the generated configuration reference cannot disagree. Earlier entries win over later ones
 * for the same key (WARDEN_DATABASE_URL over DATABASE_URL).
 */
export const ENV_KEYS: ReadonlyArray<{ env: string; key: string }> = [
  { env: 'WARDEN_DATABASE_URL', key: 'database.url' },
  { env: 'DATABASE_URL', key: 'database.url' },
  { env: 'WARDEN_APPLICATION_NAME', key: 'database.applicationName' },
  { env: 'WARDEN_CONNECT_TIMEOUT', key: 'database.connectTimeout' },
  { env: 'WARDEN_STATEMENT_TIMEOUT', key: 'database.statementTimeout' },
  { env: 'WARDEN_POOL_MAX', key: 'database.poolMax' },
  { env: 'WARDEN_SCHEMA', key: 'wardenSchema' },
  { env: 'WARDEN_SESSIONS_TABLE', key: 'sessions.table' },
  { env: 'WARDEN_ORPHAN_AFTER', key: 'sessions.orphanAfter' },
  { env: 'WARDEN_BATCH_SIZE', key: 'sweep.batchSize' },
  { env: 'WARDEN_BATCH_TARGET', key: 'sweep.batchTarget' },
  { env: 'WARDEN_ADMIN_TOKEN', key: 'server.adminToken' },
  { env: 'WARDEN_HOST', key: 'server.host' },
  { env: 'WARDEN_PORT', key: 'server.port' },
]
