import { quoteIdent, sql } from '../sql.js'

const runsTable = (schema: string) => `${quoteIdent(schema)}.scheduled_runs`

/** The primary key makes the claim atomic: of N replicas inserting the same slot, one gets a row back. */
export const claimRun = (schema: string, key: string, owner: string, leaseMs: number) =>
  sql(
    'scheduler.claim',
    `INSERT INTO ${runsTable(schema)} (key, owner, lease_until)
     VALUES ($1, $2, now() + make_interval(secs => $3::float8 / 1000))
     ON CONFLICT (key) DO NOTHING
     RETURNING key`,
    [key, owner, leaseMs],
  )

export const finishRun = (schema: string, key: string, owner: string) =>
  sql('scheduler.finish', `UPDATE ${runsTable(schema)} SET finished_at = now() WHERE key = $1 AND owner = $2`, [key, owner])

export const pruneRuns = (schema: string, keepDays: number) =>
  sql('scheduler.prune', `DELETE FROM ${runsTable(schema)} WHERE claimed_at < now() - make_interval(days => $1)`, [keepDays])
