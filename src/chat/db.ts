import type pg from 'pg'
import { inPoolTransaction, run, withPoolClient } from '../db/database.js'
import type { Sql } from '../db/sql.js'
import { databaseError } from './errors.js'

/**
 * The chat path's only ways to touch the database. Every one checks a client out, uses it for
 * a bounded amount of work and releases it in `finally`, so no code path can leave a
 * connection checked out, and the caller decides what happens between two of them (the LLM
 * call) with none held. Failures come back as ChatErrors (pool_timeout 503, database_error 500).
 */

export { run }

const onChatPool = { connectError: databaseError }

export const withClient = <T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  withPoolClient(pool, work, onChatPool)

export const inTransaction = <T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  inPoolTransaction(pool, work, onChatPool)

/** One statement on its own connection (its own implicit transaction). */
export async function runOnce<R extends pg.QueryResultRow>(pool: pg.Pool, statement: Sql): Promise<pg.QueryResult<R>> {
  try {
    return await withClient(pool, (client) => run<R>(client, statement))
  } catch (error) {
    throw databaseError(error)
  }
}
