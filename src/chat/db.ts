import type pg from 'pg'
import type { Sql } from '../db/sql.js'
import { databaseError } from './errors.js'

/**
 * The chat path's only ways to touch the database. Every one checks a client out, uses it for
 * a bounded amount of work and releases it in `finally`, so no code path can leave a
 * connection checked out, and the caller decides what happens between two of them (the LLM
 * call) with none held. Failures come back as ChatErrors (pool_timeout 503, database_error 500).
 */

export const run = <R extends pg.QueryResultRow>(on: pg.Pool | pg.PoolClient, statement: Sql) => on.query<R>({ text: statement.text, values: statement.values })

/** A connection lost mid-use must not go back to the pool for the next request to trip over. */
function isBroken(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code
  return typeof code === 'string' && (code.startsWith('08') || code === 'ECONNRESET' || code === '57P01')
}

export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient
  try {
    client = await pool.connect()
  } catch (error) {
    throw databaseError(error)
  }
  let broken: Error | undefined
  // pg-pool drops its error listener while a client is checked out; without ours a connection
  // ended by the server between two statements would crash the process.
  const onError = (error: Error) => (broken = error)
  client.on('error', onError)
  try {
    return await work(client)
  } catch (error) {
    if (isBroken(error)) broken = error as Error
    throw error
  } finally {
    client.removeListener('error', onError)
    client.release(broken)
  }
}

/** BEGIN … COMMIT on one client; ROLLBACK on any error, including ones thrown by `work` itself. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN')
    try {
      const result = await work(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined)
      throw error
    }
  })
}

/** One statement on its own connection (its own implicit transaction). */
export async function runOnce<R extends pg.QueryResultRow>(pool: pg.Pool, statement: Sql): Promise<pg.QueryResult<R>> {
  try {
    return await withClient(pool, (client) => run<R>(client, statement))
  } catch (error) {
    throw databaseError(error)
  }
}
