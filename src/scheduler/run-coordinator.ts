import type { RunCoordinator } from 'node-cron'
import type { Database } from '../db/database.js'
import { claimRun, finishRun, pruneRuns } from '../db/queries/scheduler.js'

/**
 * node-cron's distributed mode asks a coordinator before each slot ("job:2026-11-21T12:05:00Z").
 * Claiming the slot's row in PostgreSQL means that with N replicas each slot runs exactly once,
 * with no leader election and nothing beyond the database every replica already has.
 * A replica that cannot reach the database claims nothing (node-cron fails closed).
 */
export class PostgresRunCoordinator implements RunCoordinator {
  private claims = 0

  constructor(
    private readonly db: Database,
    private readonly schema: string,
    readonly owner: string,
    private readonly keepDays = 7,
  ) {}

  async shouldRun(key: string, ttlMs: number): Promise<boolean> {
    const rows = await this.db.rows(claimRun(this.schema, key, this.owner, ttlMs))
    // Pruning rides on claims: no timer of its own, and it only runs where the scheduler runs.
    if (rows.length > 0 && ++this.claims % 100 === 1) await this.db.query(pruneRuns(this.schema, this.keepDays)).catch(() => undefined)
    return rows.length > 0
  }

  async onComplete(key: string): Promise<void> {
    await this.db.query(finishRun(this.schema, key, this.owner))
  }
}
