import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from './helpers/cli.js'
import { createTestDatabase, type TestDatabase } from './helpers/db.js'

/**
 * What an application team gets from the registry: the packed tarball of the current build
 * (`npm pack`; prepack's build is what `pretest` already ran, so scripts are skipped),
 * installed with npm into a scratch app and used as `warden/pool` from plain ESM and from
 * TypeScript. The tarball is installed for real; its dependencies are linked to this
 * checkout's node_modules (file: links), so no registry and no 100 MB of copies are needed.
 */
interface PackedFile {
  path: string
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string
  version: string
  dependencies: Record<string, string>
}
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')

let dir: string
let app: string
let files: string[]
let t: TestDatabase

const run = (command: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
  spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 })

beforeAll(async () => {
  t = await createTestDatabase('package')
  dir = mkdtempSync(join(tmpdir(), 'warden-pack-'))
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' }),
  ) as Array<{ filename: string; files: PackedFile[] }>
  const tarball = join(dir, packed[0]!.filename)
  // The archive itself, not npm's account of it.
  files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((entry) => entry.replace(/^package\//, ''))
  expect(files.sort()).toEqual(packed[0]!.files.map((f) => f.path).sort())

  app = join(dir, 'app')
  mkdirSync(app)
  const dependencies = Object.fromEntries(Object.keys(pkg.dependencies).map((name) => [name, `file:${join(ROOT, 'node_modules', name)}`]))
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({
      name: 'scratch-app',
      private: true,
      type: 'module',
      dependencies: { ...dependencies, [pkg.name]: `file:${tarball}` },
    }),
  )
  const install = run('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app)
  expect(install.status, install.stdout + install.stderr).toBe(0)
}, 180_000)

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await t?.drop()
})

describe('npm pack', () => {
  it('ships the built CLI, the typed library, the oclif manifest and the examples', () => {
    for (const path of [
      'package.json',
      'README.md',
      'bin/run.js',
      'oclif.manifest.json',
      'dist/pool/index.js',
      'dist/pool/index.d.ts',
      'dist/commands/sessions/sweep.js',
      'examples/conversation_sessions/schema.sql',
    ])
      expect(files, path).toContain(path)
  })

  it('leaves out tests, sources, benches, scripts, source maps and the dev entry point', () => {
    const unwanted = files.filter((path) =>
      /^(test|src|bench|scripts|docs|deploy|node_modules)\/|\.map$|^bin\/dev\.js$|^tsconfig/.test(path),
    )
    expect(unwanted).toEqual([])
  })

  it('its oclif manifest lists exactly the commands in its dist/', () => {
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', pkg.name, 'oclif.manifest.json'), 'utf8')) as {
      version: string
      commands: Record<string, unknown>
    }
    const commands = files
      .filter((path) => /^dist\/commands\/.+\.js$/.test(path))
      .map((path) =>
        path
          .replace(/^dist\/commands\//, '')
          .replace(/\.js$/, '')
          .replaceAll('/', ':'),
      )
    expect(Object.keys(manifest.commands).sort()).toEqual(commands.sort())
    expect(manifest.version).toBe(pkg.version)
  })
})

describe('warden/pool in a scratch app', () => {
  it('plain ESM: node runs it, the pool works as a pg.Pool, and a connection held during an LLM call is counted', async () => {
    await t.exec('CREATE TABLE app_notes (id serial PRIMARY KEY, body text NOT NULL)')
    writeFileSync(
      join(app, 'app.mjs'),
      `import { Registry } from 'prom-client'
import { createInstrumentedPool, llmCall, poolScope, ConnectionHeldDuringLlmCallError, POOL_METRIC_NAMES } from 'warden/pool'

const registry = new Registry()
const warnings = []
const pool = createInstrumentedPool(
  { connectionString: process.env.DATABASE_URL, max: 2 },
  { poolName: 'scratch', registry, logger: { warn: (details) => warnings.push(details.event) } },
)
await poolScope(async () => {
  await llmCall('chat', async () => 'nothing held')
  const client = await pool.connect()
  await client.query('INSERT INTO app_notes (body) VALUES ($1)', ['written through warden/pool'])
  await llmCall('chat', async () => 'held')
  let strict = null
  await llmCall('chat', async () => 'refused', { strict: true }).catch((error) => (strict = error instanceof ConnectionHeldDuringLlmCallError))
  client.release()
  console.log(JSON.stringify({ strict, warnings, metrics: await registry.metrics(), heldName: POOL_METRIC_NAMES.heldDuringLlmCall }))
})
await pool.end()
`,
    )
    const result = run(process.execPath, ['app.mjs'], app, { DATABASE_URL: t.url })
    expect(result.status, result.stderr).toBe(0)
    const out = JSON.parse(result.stdout) as { strict: boolean; warnings: string[]; metrics: string; heldName: string }
    expect(out.strict).toBe(true)
    expect(out.warnings).toEqual(['db_connection_held_during_llm_call'])
    const held = new RegExp(`^${out.heldName}(_total)?\\{[^}]*pool_name="scratch"[^}]*operation="chat"[^}]*\\} (\\d+)$`, 'm').exec(
      out.metrics,
    )
    expect(held, out.metrics).not.toBeNull()
    // One call with a client held (the strict one was refused before it started, and is counted too).
    expect(Number(held![2])).toBe(2)
    const { rows } = await t.exec('SELECT body FROM app_notes')
    expect(rows).toEqual([{ body: 'written through warden/pool' }])
  })

  it('only warden/pool is exported: a deep import into dist/ is refused', () => {
    writeFileSync(join(app, 'deep.mjs'), "await import('warden/dist/pool/instrumented-pool.js')\n")
    const result = run(process.execPath, ['deep.mjs'], app)
    expect(result.status).not.toBe(0)
    expect(result.stderr).toContain('ERR_PACKAGE_PATH_NOT_EXPORTED')
  })

  it('TypeScript (NodeNext): tsc type-checks a correct use, and rejects a wrong one by its types', () => {
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2022'],
          strict: true,
          noEmit: true,
          // warden's own .d.ts are checked too, with the types its dependencies bring
          skipLibCheck: false,
        },
        // One program (tsc is slow to load @types/node): every error must be wrong.ts's.
        files: ['app.ts', 'wrong.ts'],
      }),
    )
    writeFileSync(
      join(app, 'app.ts'),
      `import pg from 'pg'
import { Registry } from 'prom-client'
import {
  createInstrumentedPool,
  describePool,
  instrumentPool,
  llmCall,
  poolScope,
  type InstrumentPoolOptions,
  type PoolLogger,
  type PoolSnapshot,
} from 'warden/pool'

const logger: PoolLogger = { warn: (details, message) => console.warn(details.event, details.poolName, message) }
const options: InstrumentPoolOptions = { poolName: 'chat', registry: new Registry(), logger, longHoldMs: 5000 }
const pool: pg.Pool = createInstrumentedPool({ connectionString: 'postgres://app@db/app', max: 10 }, options)
const same: pg.Pool = instrumentPool(new pg.Pool(), { poolName: 'other' })
const reply: Promise<string> = poolScope(() => llmCall('chat', async () => 'text'))
const snapshot: PoolSnapshot = describePool(pool)
export { same, reply, snapshot }
`,
    )
    writeFileSync(
      join(app, 'wrong.ts'),
      `import pg from 'pg'
import { instrumentPool, llmCall } from 'warden/pool'
instrumentPool(new pg.Pool(), { registry: undefined })
const n: number = await llmCall('chat', async () => 'text')
export { n }
`,
    )
    const result = run(process.execPath, [TSC, '-p', 'tsconfig.json'], app)
    const errors = result.stdout.split('\n').filter((line) => /error TS\d+/.test(line))
    expect(errors, result.stdout + result.stderr).toEqual([
      "wrong.ts(3,31): error TS2345: Argument of type '{ registry: undefined; }' is not assignable to parameter of type 'InstrumentPoolOptions'.",
      "wrong.ts(4,7): error TS2322: Type 'string' is not assignable to type 'number'.",
    ])
    expect(result.stdout).toContain(
      "Property 'poolName' is missing in type '{ registry: undefined; }' but required in type 'InstrumentPoolOptions'.",
    )
  })
})

it('the scratch app holds warden as installed from the tarball, not a link to this checkout', () => {
  expect(readdirSync(join(app, 'node_modules', pkg.name)).sort()).toEqual([...new Set(files.map((path) => path.split('/')[0]!))].sort())
})
