import type pg from 'pg'
import type { Registry } from 'prom-client'
import type { TargetConfig, WardenConfig } from '../core/config.js'
import type { Database } from '../db/database.js'
import { localStatementTimeout, readOnlyTransaction } from '../db/queries/transaction.js'
import type { SessionTable } from '../db/session-table.js'
import type { WardenMetrics } from './warden-metrics.js'

/** A run that could report part of what it collects: the part is applied, and the run still counts as failed. */
export class PartialResult<T> extends Error {
  override name = 'PartialResult'
  constructor(
    message: string,
    readonly partial: T,
  ) {
    super(message)
  }
}

/** What a collector gets for one run. */
export interface CollectContext {
  /** the target's collection pool: a busy admin API cannot starve the metrics of connections */
  db: Database
  config: WardenConfig
  /** the target this run is about: every series it sets carries target="<name>" */
  target: TargetConfig
  /** the target's session tables, catalog-checked once and cached (or why one is not usable) */
  tables: () => Promise<Array<SessionTable | Error>>
  /** aborted when this run's deadline passes or the service stops */
  signal: AbortSignal
  /** milliseconds left before the deadline (at least 1) */
  remainingMs: () => number
  /** a read-only transaction whose statements the server cancels at the deadline */
  readOnly: <T>(work: (client: pg.PoolClient) => Promise<T>) => Promise<T>
}

/**
 * One topic of database-derived metrics, postgres_exporter style: the file that defines a
 * collector holds its metric descriptions, its SQL and its update function side by side.
 *
 * `collect` does the slow part (queries) and returns plain data; `update` is synchronous and
 * only runs when `collect` finished before the deadline, so a scrape sees either the previous
 * values or the new ones, never half of each, and a late answer never overwrites newer values.
 */
export interface Collector<T = unknown> {
  /** the `collector` label of warden_collector_success and friends */
  readonly name: string
  /** false for collectors that read in-process state only: they run while the database is down */
  readonly needsDatabase?: boolean
  /** run at most this often, in seconds (default: every collection round) */
  readonly minIntervalSeconds?: number
  /** this collector's deadline, in seconds (default: server.collectTimeout) */
  readonly timeoutSeconds?: number
  collect(ctx: CollectContext): Promise<T>
  /** sets the target's series (and only the target's: see TargetSeries) */
  update(result: T, target: string): void
}

/** What a collector factory may register into and report through. */
export interface CollectorEnv {
  registry: Registry
  metrics: WardenMetrics
  config: WardenConfig
}

/** Creates a collector and its metrics in `env.registry`; called once per registry. */
export type CollectorFactory = (env: CollectorEnv) => Collector

export async function readOnlyWithDeadline<T>(
  db: Database,
  ctx: Pick<CollectContext, 'signal' | 'remainingMs'>,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return db.transaction(async (client) => {
    // The wait for a pooled connection may have used up the deadline: do not start a query then.
    if (ctx.signal.aborted) throw new Error('deadline passed while waiting for a connection')
    await db.query(readOnlyTransaction(), client)
    await db.query(localStatementTimeout(ctx.remainingMs()), client)
    return work(client)
  })
}
