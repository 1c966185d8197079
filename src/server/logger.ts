import pino, { type DestinationStream, type Logger } from 'pino'
import { redactText, redactUrl } from '../core/urls.js'

export type { Logger } from 'pino'

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/**
 * Wherever these keys show up in a logged object, their values are replaced. Warden never logs
 * request headers or its config on purpose; this is the net under a future `log.info({ req })`.
 */
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'headers.cookie',
  'req.headers.cookie',
  'adminToken',
  '*.adminToken',
  'config.server.adminToken',
  'password',
  '*.password',
  'databaseUrl',
  '*.databaseUrl',
  'config.database.url',
]

/** Connection URLs keep everything but the password, so a log still says where Warden connects. */
function censor(value: unknown): unknown {
  return typeof value === 'string' && /^postgres(ql)?:\/\//i.test(value) ? redactUrl(value) : '[redacted]'
}

export interface LoggerOptions {
  level?: string
  /** auto: readable lines on a terminal, JSON lines otherwise */
  format?: LogFormat
  /** default: stdout */
  destination?: DestinationStream
  isTTY?: boolean
  /** values that must never appear in a log line (the admin token, the database password), wherever they turn up */
  secrets?: Array<string | undefined>
}

/** Deep copy of a log entry with credentials masked in every string: URLs, key/value pairs, known secrets. */
export function scrubber(secrets: Array<string | undefined> = []): (value: unknown) => unknown {
  const known = secrets.filter((secret): secret is string => typeof secret === 'string' && secret.length >= 4)
  const text = (value: string) => known.reduce((out, secret) => out.split(secret).join('[redacted]'), redactText(value))
  const walk = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return text(value)
    if (depth > 6 || value === null || typeof value !== 'object') return value
    if (value instanceof Error)
      return { type: value.name, message: text(value.message), stack: value.stack ? text(value.stack) : undefined }
    if (Array.isArray(value)) return value.map((item) => walk(item, depth + 1))
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(item, depth + 1)]))
  }
  return (value) => walk(value, 0)
}

const LEVEL_COLORS: Record<string, string> = {
  fatal: '\x1b[35m',
  error: '\x1b[31m',
  warn: '\x1b[33m',
  info: '\x1b[32m',
  debug: '\x1b[36m',
  trace: '\x1b[90m',
}
const SKIPPED_KEYS = new Set(['level', 'time', 'msg', 'pid', 'hostname'])

/** One line per entry for a terminal: `12:04:05.120 INFO  message key=value …`. */
export function prettyLine(json: string, color: boolean): string {
  let entry: Record<string, unknown>
  try {
    entry = JSON.parse(json) as Record<string, unknown>
  } catch {
    return json
  }
  const level = typeof entry.level === 'string' ? entry.level : 'info'
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : ''
  const label = level.toUpperCase().padEnd(5)
  const fields = Object.entries(entry)
    .filter(([key]) => !SKIPPED_KEYS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
  const head = color ? `${LEVEL_COLORS[level] ?? ''}${label}\x1b[0m` : label
  return `${time} ${head} ${typeof entry.msg === 'string' ? entry.msg : ''}${fields.length ? `  ${fields.join(' ')}` : ''}\n`
}

/**
 * The service's logger: pino JSON lines (12-factor: stdout, one object per line), secrets
 * redacted. On a terminal, the same entries as readable lines (pino-pretty is not a dependency).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true })
  const isTTY = options.isTTY ?? process.stdout.isTTY === true
  const pretty = options.format === 'pretty' || ((options.format ?? 'auto') === 'auto' && isTTY)
  const stream: DestinationStream = pretty ? { write: (line: string) => destination.write(prettyLine(line, isTTY)) } : destination
  const scrub = scrubber(options.secrets)
  return pino(
    {
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: (entry) => scrub(entry) as Record<string, unknown> },
      hooks: {
        // The message string too: an error text may quote a URL or a request path.
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? scrub(arg) : arg)) as Parameters<typeof method>)
        },
      },
      redact: { paths: REDACT_PATHS, censor },
    },
    stream,
  )
}
