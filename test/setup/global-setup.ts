import type { TestProject } from 'vitest/node'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/embedded/embedded-postgres.js'
import { ensurePeers } from './peers.js'

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string
    serverLabel: string
  }
}

let server: EmbeddedPostgres | undefined

/**
 * The suite's real peers (pgbouncer, prometheus, promtool), installed when missing; then one
 * PostgreSQL server for the run: WARDEN_TEST_DATABASE_URL when set (CI runs the suite a
 * second time against the machine's PostgreSQL 15), otherwise an embedded PostgreSQL 18.
 * Each test file then makes its own database on it.
 */
export async function setup(project: TestProject): Promise<void> {
  // First, so a machine without them stops at once rather than after minutes of other tests.
  ensurePeers({
    onInstall: (packages) =>
      process.stderr.write(`global setup: installing ${packages.join(' ')} (Debian packages the suite runs) with apt-get...\n`),
  })
  const external = process.env.WARDEN_TEST_DATABASE_URL
  if (external) {
    project.provide('adminUrl', external)
    project.provide('serverLabel', 'external')
    return
  }
  server = await startEmbeddedPostgres()
  project.provide('adminUrl', server.url)
  project.provide('serverLabel', `embedded:${server.port}`)
}

export async function teardown(): Promise<void> {
  await server?.stop()
}
