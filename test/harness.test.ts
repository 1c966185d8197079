import { describe, expect, it } from 'vitest'
import { useTestDatabase } from './helpers/db.js'
import { parseJson, runCli } from './helpers/cli.js'
import { MIGRATIONS } from '../src/db/migrate.js'

describe('test harness', () => {
  const t = useTestDatabase('harness')

  it('gives each file its own database on a real PostgreSQL', async () => {
    const { rows } = await t.exec('SELECT current_database() AS name, current_setting($1)::int AS version', ['server_version_num'])
    expect(rows[0].name).toBe(t.name)
    expect(rows[0].version).toBeGreaterThanOrEqual(130000)
  })

  it('runs the built CLI as a subprocess against that database', async () => {
    const result = await runCli(['db', 'migrate', '--json', '--database-url', t.url])
    expect(result.code, result.stderr).toBe(0)
    expect(parseJson(result)).toMatchObject({ schema: 'warden', currentVersion: Math.max(...MIGRATIONS.map((m) => m.version)) })
  })
})
