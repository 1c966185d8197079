import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig, redactUrl, type FlagValue, type LoadedConfig } from '../src/core/config.js'
import { ExitCode, WardenError } from '../src/core/errors.js'

/** A fresh directory to act as cwd, so no developer's ./warden.config.yaml is ever read. */
const freshDir = () => mkdtempSync(join(tmpdir(), 'warden-config-test-'))

function writeYaml(dir: string, name: string, yaml: string): string {
  const path = join(dir, name)
  writeFileSync(path, yaml)
  return path
}

/** A complete conversation_sessions-like mapping, with a placeholder for one changed line. */
const mappingYaml = (extra = '') => `sessions:
  table: public.chat_sessions
  columns:
    id: sid
    active: open
    startedAt: started
${extra}`

const flag = (key: string, name: string, value: unknown): FlagValue => ({ key, flag: name, value })

/** Runs loadConfig expecting it to throw, and returns the WardenError it threw. */
function loadError(options: Parameters<typeof loadConfig>[0]): WardenError {
  let result: LoadedConfig | undefined
  try {
    result = loadConfig(options)
  } catch (error) {
    expect(error).toBeInstanceOf(WardenError)
    return error as WardenError
  }
  throw new Error(`expected loadConfig to fail, it returned ${JSON.stringify(result?.config)}`)
}

describe('loadConfig precedence: flag > env > file > defaults', () => {
  it('uses the built-in defaults (the SPEC conversation_sessions mapping) when nothing is configured', () => {
    const { config, configFile } = loadConfig({ env: {}, cwd: freshDir() })
    expect(configFile).toBeUndefined()
    expect(config.database.url).toBeUndefined()
    expect(config.wardenSchema).toBe('warden')
    // no batch size by default: batches adapt toward a 300 ms target (0.3 s)
    expect(config.sweep.batchSize).toBeUndefined()
    expect(config.sweep.batchTarget).toBe(0.3)
    expect(config.sessions).toMatchObject({
      table: 'public.conversation_sessions',
      orphanAfter: 7200,
      columns: {
        id: 'session_id',
        active: 'is_active',
        startedAt: 'session_start',
        endedAt: ['session_end', 'ended_at'],
        group: 'agent_role',
      },
    })
  })

  it('a config file value beats the default', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  orphanAfter: 45m\nsweep:\n  batchSize: 100\n')
    const { config, sources, configFile } = loadConfig({ env: {}, cwd: dir, configPath: path })
    expect(configFile).toBe(path)
    expect(config.sessions.orphanAfter).toBe(2700)
    expect(config.sweep.batchSize).toBe(100)
    expect(sources.get('sessions.orphanAfter')).toBe(`config file ${path}`)
  })

  it('an environment variable beats the config file', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  orphanAfter: 45m\nsweep:\n  batchSize: 100\n')
    const { config, sources } = loadConfig({ env: { WARDEN_ORPHAN_AFTER: '3h', WARDEN_BATCH_SIZE: '250' }, cwd: dir, configPath: path })
    expect(config.sessions.orphanAfter).toBe(10800)
    expect(config.sweep.batchSize).toBe(250)
    expect(sources.get('sessions.orphanAfter')).toBe('env WARDEN_ORPHAN_AFTER')
    expect(sources.get('sweep.batchSize')).toBe('env WARDEN_BATCH_SIZE')
  })

  it('a flag beats the environment and the config file', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  orphanAfter: 45m\n')
    const { config, sources } = loadConfig({
      env: { WARDEN_ORPHAN_AFTER: '3h' },
      cwd: dir,
      configPath: path,
      flags: [flag('sessions.orphanAfter', '--orphan-after', '10m')],
    })
    expect(config.sessions.orphanAfter).toBe(600)
    expect(sources.get('sessions.orphanAfter')).toBe('flag --orphan-after')
  })

  it('a flag left undefined (not given) does not hide the lower layers', () => {
    const { config } = loadConfig({
      env: { WARDEN_ORPHAN_AFTER: '3h' },
      cwd: freshDir(),
      flags: [flag('sessions.orphanAfter', '--orphan-after', undefined)],
    })
    expect(config.sessions.orphanAfter).toBe(10800)
  })

  it('database.url: flag > WARDEN_DATABASE_URL > DATABASE_URL > file', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'database:\n  url: postgres://file@h/db\n')
    const load = (env: Record<string, string>, flagValue?: string) =>
      loadConfig({ env, cwd: dir, configPath: path, flags: [flag('database.url', '--database-url', flagValue)] })

    expect(load({}).config.database.url).toBe('postgres://file@h/db')
    expect(load({ DATABASE_URL: 'postgres://plain@h/db' }).config.database.url).toBe('postgres://plain@h/db')
    const both = load({ DATABASE_URL: 'postgres://plain@h/db', WARDEN_DATABASE_URL: 'postgres://warden@h/db' })
    expect(both.config.database.url).toBe('postgres://warden@h/db')
    expect(both.sources.get('database.url')).toBe('env WARDEN_DATABASE_URL')
    expect(
      load({ DATABASE_URL: 'postgres://plain@h/db', WARDEN_DATABASE_URL: 'postgres://warden@h/db' }, 'postgres://flag@h/db').config.database
        .url,
    ).toBe('postgres://flag@h/db')
  })

  it('an empty WARDEN_DATABASE_URL counts as unset, so DATABASE_URL applies', () => {
    const { config } = loadConfig({ env: { WARDEN_DATABASE_URL: '', DATABASE_URL: 'postgres://plain@h/db' }, cwd: freshDir() })
    expect(config.database.url).toBe('postgres://plain@h/db')
  })

  it('reads ./warden.config.yaml from the working directory when no file is named', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'warden.config.yaml', 'wardenSchema: from_cwd\n')
    const { config, configFile } = loadConfig({ env: {}, cwd: dir })
    expect(config.wardenSchema).toBe('from_cwd')
    expect(configFile).toBe(path)
  })

  it('WARDEN_CONFIG (relative to cwd) is read instead of ./warden.config.yaml', () => {
    const dir = freshDir()
    writeYaml(dir, 'warden.config.yaml', 'wardenSchema: from_cwd\n')
    const path = writeYaml(dir, 'other.yaml', 'wardenSchema: from_env_file\n')
    const { config, configFile } = loadConfig({ env: { WARDEN_CONFIG: 'other.yaml' }, cwd: dir })
    expect(config.wardenSchema).toBe('from_env_file')
    expect(configFile).toBe(path)
  })

  it('--config wins over WARDEN_CONFIG (which is then not even opened)', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'flag.yaml', 'wardenSchema: from_flag_file\n')
    const { config, configFile } = loadConfig({ env: { WARDEN_CONFIG: join(dir, 'does-not-exist.yaml') }, cwd: dir, configPath: path })
    expect(config.wardenSchema).toBe('from_flag_file')
    expect(configFile).toBe(path)
  })

  it('a missing ./warden.config.yaml is not an error: defaults apply', () => {
    expect(() => loadConfig({ env: {}, cwd: freshDir() })).not.toThrow()
  })

  it('an empty config file is the same as no file', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'empty.yaml', '')
    expect(loadConfig({ env: {}, cwd: dir, configPath: path }).config).toEqual(loadConfig({ env: {}, cwd: freshDir() }).config)
  })
})

describe('sessions.columns is one piece of knowledge', () => {
  it('a file mapping replaces the default columns whole: nothing of the default mapping is inherited', () => {
    const dir = freshDir()
    const path = writeYaml(
      dir,
      'w.yaml',
      'sessions:\n  table: public.llm_sessions\n  columns:\n    id: id\n    startedAt: created_at\n    endedAt: expired_at\n',
    )
    const { config, sources } = loadConfig({ env: {}, cwd: dir, configPath: path })
    expect(config.sessions.columns).toEqual({ id: 'id', startedAt: 'created_at', endedAt: ['expired_at'] })
    expect(config.sessions.columns.active).toBeUndefined()
    expect(config.sessions.columns.lastSeenAt).toBeUndefined()
    expect(config.sessions.columns.durationSeconds).toBeUndefined()
    expect(config.sessions.columns.group).toBeUndefined()
    expect(sources.get('sessions.columns')).toBe(`config file ${path}`)
    expect([...sources.keys()].filter((key) => key.startsWith('sessions.columns.'))).toEqual([])
  })

  it('a file that sets only sessions.table keeps the default columns, and the env can still override the table', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  table: app.sessions\n')
    const { config } = loadConfig({ env: { WARDEN_SESSIONS_TABLE: 'app.sessions_v2' }, cwd: dir, configPath: path })
    expect(config.sessions.table).toBe('app.sessions_v2')
    expect(config.sessions.columns.active).toBe('is_active')
  })

  it('a single endedAt column is carried as a one-element list', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', mappingYaml('    endedAt: closed_at\n'))
    expect(loadConfig({ env: {}, cwd: dir, configPath: path }).config.sessions.columns.endedAt).toEqual(['closed_at'])
  })
})

describe('durations become seconds', () => {
  it.each([
    ['2h', 7200],
    ['15m', 900],
    ['1h30m', 5400],
    ['90s', 90],
    ['7d', 604800],
  ])('orphanAfter %s is %i seconds', (text, seconds) => {
    expect(loadConfig({ env: { WARDEN_ORPHAN_AFTER: text }, cwd: freshDir() }).config.sessions.orphanAfter).toBe(seconds)
  })

  it('a bare number in YAML is taken as seconds', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  orphanAfter: 90\ndatabase:\n  connectTimeout: 2\n')
    const { config } = loadConfig({ env: {}, cwd: dir, configPath: path })
    expect(config.sessions.orphanAfter).toBe(90)
    expect(config.database.connectTimeout).toBe(2)
  })

  it('connect and statement timeouts are durations too', () => {
    const { config } = loadConfig({ env: { WARDEN_CONNECT_TIMEOUT: '500ms', WARDEN_STATEMENT_TIMEOUT: '2m' }, cwd: freshDir() })
    expect(config.database.connectTimeout).toBe(0.5)
    expect(config.database.statementTimeout).toBe(120)
  })
})

describe('a bad value is reported with its key, value, source and what was expected', () => {
  it('--orphan-after -5m: usage error (64) naming the flag, the value and a positive duration', () => {
    const error = loadError({ env: {}, cwd: freshDir(), flags: [flag('sessions.orphanAfter', '--orphan-after', '-5m')] })
    expect(error.exitCode).toBe(ExitCode.usage)
    expect(error.message).toContain('sessions.orphanAfter')
    expect(error.message).toContain('"-5m"')
    expect(error.message).toContain('flag --orphan-after')
    expect(error.message).toMatch(/expected a positive duration such as 90s/)
  })

  it('WARDEN_ORPHAN_AFTER="2 parsecs": config error (78) naming the env var', () => {
    const error = loadError({ env: { WARDEN_ORPHAN_AFTER: '2 parsecs' }, cwd: freshDir() })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.orphanAfter = "2 parsecs"')
    expect(error.message).toContain('env WARDEN_ORPHAN_AFTER')
    expect(error.message).toMatch(/expected a positive duration/)
  })

  it('orphanAfter: 0s in a file: config error (78) naming the file (zero is not a span of time)', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  orphanAfter: 0s\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.orphanAfter = "0s"')
    expect(error.message).toContain(`config file ${path}`)
    expect(error.message).toMatch(/expected a positive duration/)
  })

  it('--batch-size 0: usage error (64) with the allowed range', () => {
    const error = loadError({ env: {}, cwd: freshDir(), flags: [flag('sweep.batchSize', '--batch-size', '0')] })
    expect(error.exitCode).toBe(ExitCode.usage)
    expect(error.message).toContain('sweep.batchSize = "0"')
    expect(error.message).toContain('flag --batch-size')
    expect(error.message).toContain('expected an integer from 1 to 100000')
  })

  it('WARDEN_BATCH_SIZE=abc: config error (78) with the allowed range', () => {
    const error = loadError({ env: { WARDEN_BATCH_SIZE: 'abc' }, cwd: freshDir() })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sweep.batchSize = "abc"')
    expect(error.message).toContain('env WARDEN_BATCH_SIZE')
    expect(error.message).toContain('expected an integer from 1 to 100000')
  })

  it('batchSize: 0 in a file: config error (78)', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sweep:\n  batchSize: 0\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sweep.batchSize = 0')
    expect(error.message).toContain(`config file ${path}`)
  })

  it('batchTarget: 500ms in a file is 0.5 s; 0, "abc" and -1s are config errors (78) naming key, value and what is expected', () => {
    const dir = freshDir()
    const good = writeYaml(dir, 'good.yaml', 'sweep:\n  batchTarget: 500ms\n')
    expect(loadConfig({ env: {}, cwd: dir, configPath: good }).config.sweep.batchTarget).toBe(0.5)
    for (const [value, named] of [
      ['0', 'sweep.batchTarget = 0'],
      ['abc', 'sweep.batchTarget = "abc"'],
      ['-1s', 'sweep.batchTarget = "-1s"'],
    ] as const) {
      const path = writeYaml(dir, `bad-${value}.yaml`, `sweep:\n  batchTarget: ${value}\n`)
      const error = loadError({ env: {}, cwd: dir, configPath: path })
      expect(error.exitCode).toBe(ExitCode.config)
      expect(error.message).toContain(named)
      expect(error.message).toContain(`config file ${path}`)
      expect(error.message).toMatch(/expected a positive duration/)
    }
  })

  it('an unknown key (typo "colums") is named with the file it came from', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  table: public.chat_sessions\n  colums:\n    id: sid\n    startedAt: started\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.colums')
    expect(error.message).toMatch(/unknown key/)
    expect(error.message).toContain(`config file ${path}`)
  })

  it('an unknown key says which keys are expected there (so "colums" leads to "columns")', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  colums:\n    id: sid\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.message).toContain('sessions.colums')
    expect(error.message).toMatch(/\bcolumns\b/)
  })

  it('an identifier "x; drop table y" for a column is refused with the identifier rule (78 from a file)', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', mappingYaml('    group: "x; drop table y"\n'))
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.columns.group = "x; drop table y"')
    expect(error.message).toContain(`config file ${path}`)
    expect(error.message).toMatch(/expected a plain identifier/)
  })

  it('an identifier "x; drop table y" for the table is refused: 78 from a file, 64 from --table', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  table: "x; drop table y"\n')
    const fromFile = loadError({ env: {}, cwd: dir, configPath: path })
    expect(fromFile.exitCode).toBe(ExitCode.config)
    expect(fromFile.message).toContain('sessions.table = "x; drop table y"')
    expect(fromFile.message).toContain(`config file ${path}`)
    expect(fromFile.message).toMatch(/expected \[schema\.\]table with plain identifiers/)

    const fromFlag = loadError({ env: {}, cwd: freshDir(), flags: [flag('sessions.table', '--table', 'x; drop table y')] })
    expect(fromFlag.exitCode).toBe(ExitCode.usage)
    expect(fromFlag.message).toContain('sessions.table = "x; drop table y" (from flag --table)')
  })

  it('a table name with three parts is refused', () => {
    const error = loadError({ env: { WARDEN_SESSIONS_TABLE: 'db.public.sessions' }, cwd: freshDir() })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.table = "db.public.sessions" (from env WARDEN_SESSIONS_TABLE)')
  })

  it('a mapping with neither active nor endedAt is refused, saying one of them is needed', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  table: public.chat_sessions\n  columns:\n    id: sid\n    startedAt: started\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.columns')
    expect(error.message).toContain('columns.active')
    expect(error.message).toContain('columns.endedAt')
    expect(error.message).toContain(`config file ${path}`)
  })

  it('a mapping without startedAt is refused, naming sessions.columns.startedAt as missing', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'sessions:\n  table: public.chat_sessions\n  columns:\n    active: open\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.columns.startedAt missing')
  })

  it('a file that is not YAML is a config error naming the file and the place of the syntax error', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'broken.yaml', 'sessions:\n  table: [public.chat_sessions\n  columns: : :\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain(path)
    expect(error.message).toMatch(/not valid YAML/)
    expect(error.message).toMatch(/line \d+/)
  })

  it('a YAML file whose top level is not a mapping is a config error', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'list.yaml', '- sessions\n- sweep\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain(path)
    expect(error.message).toMatch(/mapping of keys/)
  })

  it('an explicitly named config file that does not exist is an error (--config and WARDEN_CONFIG)', () => {
    const dir = freshDir()
    const viaFlag = loadError({ env: {}, cwd: dir, configPath: 'nope.yaml' })
    expect(viaFlag.exitCode).toBe(ExitCode.config)
    expect(viaFlag.message).toContain(join(dir, 'nope.yaml'))
    expect(viaFlag.message).toMatch(/does not exist/)

    const viaEnv = loadError({ env: { WARDEN_CONFIG: 'missing.yaml' }, cwd: dir })
    expect(viaEnv.exitCode).toBe(ExitCode.config)
    expect(viaEnv.message).toContain(join(dir, 'missing.yaml'))
  })

  it('reports every bad value at once; a bad flag mixed with a bad env value is a config error (78)', () => {
    const error = loadError({
      env: { WARDEN_BATCH_SIZE: 'abc' },
      cwd: freshDir(),
      flags: [flag('sessions.orphanAfter', '--orphan-after', '-5m')],
    })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('sessions.orphanAfter = "-5m" (from flag --orphan-after)')
    expect(error.message).toContain('sweep.batchSize = "abc" (from env WARDEN_BATCH_SIZE)')
  })

  it('several bad flags and nothing else stay a usage error (64)', () => {
    const error = loadError({
      env: {},
      cwd: freshDir(),
      flags: [flag('sessions.orphanAfter', '--orphan-after', '2 parsecs'), flag('sweep.batchSize', '--batch-size', 'abc')],
    })
    expect(error.exitCode).toBe(ExitCode.usage)
    expect(error.message).toContain('--orphan-after')
    expect(error.message).toContain('--batch-size')
  })

  it('a connection URL written where an object belongs is not echoed with its password', () => {
    const dir = freshDir()
    const path = writeYaml(dir, 'w.yaml', 'database: postgres://warden:hunter2-secret@db:5432/app\n')
    const error = loadError({ env: {}, cwd: dir, configPath: path })
    expect(error.exitCode).toBe(ExitCode.config)
    expect(error.message).toContain('database')
    expect(error.message).not.toContain('hunter2-secret')
  })
})

describe('redactUrl', () => {
  it('hides the password and keeps user, host, port and database', () => {
    const shown = redactUrl('postgres://warden:s3cret@db.internal:6432/app')
    expect(shown).not.toContain('s3cret')
    expect(shown).toBe('postgres://warden:*****@db.internal:6432/app')
  })

  it('hides a password with URL-encoded characters', () => {
    expect(redactUrl('postgres://warden:p%40ss%2Fword@db:5432/app')).not.toMatch(/p%40ss|word/)
  })

  it('leaves a URL without a password as it is', () => {
    expect(redactUrl('postgres://warden@db:5432/app')).toBe('postgres://warden@db:5432/app')
  })

  it('hides a password given as a ?password= query parameter (which pg honours)', () => {
    const shown = redactUrl('postgres://warden@db:5432/app?sslmode=require&password=s3cret')
    expect(shown).not.toContain('s3cret')
    expect(shown).toContain('sslmode=require')
  })

  it('describes an unset URL as the PG* environment defaults', () => {
    expect(redactUrl(undefined)).toBe('(PG* environment defaults)')
  })
})
