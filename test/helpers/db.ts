import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, inject } from 'vitest'
import { Database } from '../../src/db/database.js'

export interface TestDatabase {
  url: string
  name: string
  db: Database
  /** plain SQL for test fixtures; product code goes through Database and builders */
  exec: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  drop: () => Promise<void>
}

export function adminUrl(): string {
  return inject('adminUrl')
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** A fresh database per test file (or per test), so files run in parallel without sharing rows. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `warden_t_${label
    .replace(/[^a-z0-9_]/gi, '_')
    .toLowerCase()
    .slice(0, 30)}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end()
  }
  const url = withDatabase(adminUrl(), name)
  const db = new Database({ url, applicationName: 'warden-test', connectTimeout: 5, statementTimeout: 30, poolMax: 4 })
  return {
    url,
    name,
    db,
    exec: (text, values) => db.pool.query(text, values),
    async drop() {
      await db.close().catch(() => undefined)
      const cleaner = new pg.Client({ connectionString: adminUrl() })
      await cleaner.connect()
      try {
        await cleaner.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      } finally {
        await cleaner.end()
      }
    },
  }
}

/** An existing database (e.g. a test's own embedded server's) with the same face; drop() only closes the pool. */
export function existingTestDatabase(url: string): TestDatabase {
  const db = new Database({ url, applicationName: 'warden-test', connectTimeout: 5, statementTimeout: 30, poolMax: 4 })
  return {
    url,
    name: new URL(url).pathname.slice(1),
    db,
    exec: (text, values) => db.pool.query(text, values),
    drop: () => db.close().catch(() => undefined),
  }
}

/**
 * The database of a test file (or describe block): created and prepared (seeded, migrated) before
 * its tests, dropped after them. Returns it at once; its members are there from beforeAll on.
 */
export function useTestDatabase(label: string, prepare?: (t: TestDatabase) => Promise<void>): TestDatabase {
  let current: TestDatabase | undefined
  const get = () => {
    if (!current) throw new Error(`useTestDatabase(${label}): the database exists from beforeAll on`)
    return current
  }
  beforeAll(async () => {
    current = await createTestDatabase(label)
    await prepare?.(current)
  })
  afterAll(async () => {
    await current?.drop()
  })
  return {
    get url() {
      return get().url
    },
    get name() {
      return get().name
    },
    get db() {
      return get().db
    },
    exec: (text, values) => get().exec(text, values),
    drop: () => get().drop(),
  }
}
