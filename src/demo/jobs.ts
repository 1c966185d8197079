import { Database } from '../db/database.js'
import { migrate } from '../db/migrate.js'
import { createAgentRuns, createJobsDatabase, dropJobsDatabase, JOBS_DATABASE, seedAgentRuns } from './queries.js'

export const JOBS_SEED = { finished: 40, alive: 12, dead: 15 }

/** The URL of another database on the same server. */
export function sibling(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/**
 * The demo's second target: a database of its own on the embedded server, with Warden's schema
 * and an agent_runs table (endedAt-only: open until finished_at), some of whose workers died.
 */
export async function createJobsTarget(serverUrl: string, wardenSchema: string): Promise<string> {
  const admin = new Database({ url: serverUrl, applicationName: 'warden-demo', connectTimeout: 10, statementTimeout: 60, poolMax: 1 })
  try {
    await admin.query(dropJobsDatabase())
    await admin.query(createJobsDatabase())
  } finally {
    await admin.close()
  }
  const url = sibling(serverUrl, JOBS_DATABASE)
  const db = new Database({ url, applicationName: 'warden-demo', connectTimeout: 10, statementTimeout: 60, poolMax: 1 })
  try {
    await migrate(db, wardenSchema)
    await db.query(createAgentRuns())
    await db.query(seedAgentRuns(JOBS_SEED))
  } finally {
    await db.close()
  }
  return url
}
