import pg from 'pg'
import { redactUrl, type DatabaseConfig } from '../core/config.js'
import { ExitCode, WardenError } from '../core/errors.js'
import type { Sql } from './sql.js'

export type Queryable = pg.Pool | pg.PoolClient | pg.Client

export interface QueryEvent {
  name: string
  durationMs: number
  rowCount: number | null
  error?: Error
}

export interface DatabaseOptions
  extends
    Pick<DatabaseConfig, 'url' | 'applicationName' | 'connectTimeout' | 'statementTimeout' | 'poolMax'>,
    Partial<Pick<DatabaseConfig, 'lockTimeout'>> {
  /** timing of every statement, for logs and metrics; receives builder names, never values */
  onQuery?: (event: QueryEvent) => void
  /** errors of idle pooled clients (server restart, network drop): reported, never thrown */
  onPoolError?: (error: Error) => void
}

const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN'])
/** SQLSTATEs meaning "this server will not serve us now": auth, missing database, full, shutting down. */
const UNAVAILABLE_SQLSTATES: Record<string, string> = {
  '28P01': 'password authentication failed',
  '28000': 'the server rejected the login',
  '3D000': 'the database does not exist',
  '53300': 'the server has no connection slots left (too many clients)',
  '57P01': 'the server is shutting down',
  '57P03': 'the server is starting up or shutting down',
}

/**
 * Turns driver errors into errors a user can act on. Connection-level failures become
 * "could not run" (exit 3); a cancelled statement names the builder that ran it.
 */
export function describeDatabaseError(error: unknown, url: string | undefined, statement?: string): Error {
  if (error instanceof WardenError) return error
  const err = error as Error & { code?: string; errors?: Error[] }
  const where = redactUrl(url)
  // Connecting to "localhost" tries ::1 and 127.0.0.1 and fails with an AggregateError of both.
  const code = err.code ?? err.errors?.map((inner) => (inner as { code?: string }).code).find(Boolean)
  if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) {
    return new WardenError(
      `cannot connect to PostgreSQL at ${where}: ${code}${err.message ? ` (${err.message})` : ''}`,
      ExitCode.unavailable,
      'is the server running, and are host and port right?',
    )
  }
  if (typeof code === 'string' && UNAVAILABLE_SQLSTATES[code]) {
    return new WardenError(`cannot use PostgreSQL at ${where}: ${UNAVAILABLE_SQLSTATES[code]} (${err.message})`, ExitCode.unavailable)
  }
  if (/does not support SSL/i.test(err.message ?? '')) {
    return new WardenError(
      `database.url asks for TLS (sslmode) but PostgreSQL at ${where} does not accept TLS connections`,
      ExitCode.config,
      'use sslmode=disable or sslmode=prefer in the URL, or enable ssl on the server',
    )
  }
  if (
    /self[- ]signed certificate|unable to verify the first certificate|certificate has expired|Hostname\/IP does not match/i.test(
      err.message ?? '',
    )
  ) {
    return new WardenError(
      `the TLS certificate of PostgreSQL at ${where} was not accepted: ${err.message}`,
      ExitCode.config,
      'give the CA with sslrootcert in the URL, or use sslmode=no-verify if you accept an unverified certificate',
    )
  }
  if (/timeout expired|connection timeout|Connection terminated/i.test(err.message ?? '')) {
    return new WardenError(`cannot connect to PostgreSQL at ${where}: ${err.message}`, ExitCode.unavailable)
  }
  if (code === '22P02' || code === '22007' || code === '22008') {
    // A value the user gave (an --id of the wrong type, say) that the column's type rejects.
    return new WardenError(`invalid value for statement ${statement ?? ''}: ${err.message}`, ExitCode.usage, undefined, code)
  }
  if (code === '55P03') {
    return new WardenError(
      `statement ${statement ?? ''} could not get a lock within lock_timeout: another session holds a table lock (DDL, VACUUM FULL, LOCK TABLE)`,
      ExitCode.locked,
      'pg_locks and pg_stat_activity show who; raise database.lockTimeout to wait longer',
      code,
    )
  }
  if (code === '57014') {
    return new WardenError(
      `statement ${statement ?? ''} was cancelled: ${err.message} (statement_timeout; raise database.statementTimeout if this is expected)`,
      ExitCode.failed,
      undefined,
      code,
    )
  }
  return error instanceof Error ? error : new Error(String(error))
}

/**
 * The one way Warden talks to PostgreSQL: a pg.Pool tagged with application_name (so Warden's
 * own connections are recognisable in pg_stat_activity), bounded connect and statement time,
 * named statements with timing, and an error listener so a dropped idle client never crashes.
 */
export class Database {
  readonly pool: pg.Pool
  readonly url: string | undefined
  /** lock_timeout of every statement, in ms */
  readonly lockTimeoutMs: number

  constructor(private readonly options: DatabaseOptions) {
    this.url = options.url
    this.lockTimeoutMs = Math.round((options.lockTimeout ?? 3) * 1000)
    this.pool = new pg.Pool({
      connectionString: options.url,
      application_name: options.applicationName,
      connectionTimeoutMillis: Math.round(options.connectTimeout * 1000),
      statement_timeout: Math.round(options.statementTimeout * 1000),
      lock_timeout: this.lockTimeoutMs,
      max: options.poolMax,
      idleTimeoutMillis: 10_000,
    })
    this.pool.on('error', (error) => {
      ;(options.onPoolError ?? defaultPoolErrorHandler)(error)
    })
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(statement: Sql, on: Queryable = this.pool): Promise<pg.QueryResult<R>> {
    const started = performance.now()
    try {
      const result = await on.query<R>({ text: statement.text, values: statement.values })
      this.options.onQuery?.({ name: statement.name, durationMs: performance.now() - started, rowCount: result.rowCount })
      return result
    } catch (error) {
      this.options.onQuery?.({ name: statement.name, durationMs: performance.now() - started, rowCount: null, error: error as Error })
      throw describeDatabaseError(error, this.url, statement.name)
    }
  }

  async rows<R extends pg.QueryResultRow = pg.QueryResultRow>(statement: Sql, on?: Queryable): Promise<R[]> {
    return (await this.query<R>(statement, on)).rows
  }

  withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withPoolClient(this.pool, work, {
      connectError: (error) => describeDatabaseError(error, this.url),
      onClientError: this.options.onPoolError ?? defaultPoolErrorHandler,
    })
  }

  transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inPoolTransaction(this.pool, work, {
      connectError: (error) => describeDatabaseError(error, this.url),
      onClientError: this.options.onPoolError ?? defaultPoolErrorHandler,
    })
  }

  /** Fails fast with a user-facing error when the server cannot be used at all. */
  async ping(): Promise<void> {
    await this.query({ name: 'ping', text: 'SELECT 1', values: [] })
  }

  async close(): Promise<void> {
    await this.pool.end()
  }
}

/** 57P01: the server ended the connection (admin shutdown); 08xxx: connection exceptions. */
function isConnectionLoss(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code
  return error instanceof WardenError
    ? error.exitCode === ExitCode.unavailable
    : typeof code === 'string' && (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08') || code === '57P01')
}

/** A builder's statement on a bare pool or client, for code outside Database (no timing, no error mapping). */
export const run = <R extends pg.QueryResultRow>(on: pg.Pool | pg.PoolClient, statement: Sql) =>
  on.query<R>({ text: statement.text, values: statement.values })

export interface PoolClientOptions {
  /** what a failed checkout becomes (a user-facing error) */
  connectError: (error: unknown) => Error
  /** told about a checked-out client whose connection the server ended between two statements */
  onClientError?: (error: Error) => void
}

/**
 * Checks a client out, runs the work, and always releases it: a client whose connection died
 * is destroyed instead of going back to the pool. Shared by Database and by code that holds a
 * bare (instrumented) pg.Pool, such as the reference chat path.
 */
export async function withPoolClient<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  options: PoolClientOptions,
): Promise<T> {
  let client: pg.PoolClient
  try {
    client = await pool.connect()
  } catch (error) {
    throw options.connectError(error)
  }
  let broken: Error | undefined
  // pg-pool drops its error listener while a client is checked out: a server that ends the
  // connection between two statements (restart, fast shutdown) would crash the process.
  const onError = (error: Error) => {
    broken = error
    options.onClientError?.(error)
  }
  client.on('error', onError)
  try {
    return await work(client)
  } catch (error) {
    if (isConnectionLoss(error)) broken = error as Error
    throw error
  } finally {
    client.removeListener('error', onError)
    client.release(broken)
  }
}

/** BEGIN … COMMIT on one client; ROLLBACK on any error, including ones thrown by `work` itself. */
export function inPoolTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, options: PoolClientOptions): Promise<T> {
  return withPoolClient(
    pool,
    async (client) => {
      await client.query('BEGIN')
      try {
        const result = await work(client)
        await client.query('COMMIT')
        return result
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw error
      }
    },
    options,
  )
}

function defaultPoolErrorHandler(error: Error): void {
  process.stderr.write(`warden: idle database connection failed: ${error.message}\n`)
}
