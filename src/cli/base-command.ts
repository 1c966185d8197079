import { Command, Errors, Flags, type Interfaces } from '@oclif/core'
import { loadConfig, type FlagValue, type LoadedConfig, type TargetConfig } from '../core/config.js'
import { configError, ExitCode, WardenError } from '../core/errors.js'
import { Database } from '../db/database.js'
import { resolveSessionTable } from '../db/session-table.js'
import { findTarget, selectTable } from '../fleet/targets.js'
import type { SessionHandle } from '../sessions/operations.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof WardenCommand)['baseFlags'] & T['flags']>

/**
 * What every Warden command shares: --config/--database-url/--json, configuration loading,
 * one Database per run, and the mapping of failures to documented exit codes. Subclasses parse,
 * call library code and render; they hold no SQL.
 */
export abstract class WardenCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    config: Flags.string({ char: 'c', description: 'config file (default: ./warden.config.yaml, or WARDEN_CONFIG)', helpGroup: 'GLOBAL' }),
    'database-url': Flags.string({ description: 'PostgreSQL URL; overrides WARDEN_DATABASE_URL and DATABASE_URL', helpGroup: 'GLOBAL' }),
  }

  protected loaded?: LoadedConfig

  /** Loads config with this command's flags as the top layer; flags map to config keys. */
  protected loadConfig(flags: { config?: string; 'database-url'?: string }, extra: FlagValue[] = []): LoadedConfig {
    this.loaded = loadConfig({
      configPath: flags.config,
      flags: [{ key: 'database.url', flag: '--database-url', value: flags['database-url'] }, ...extra],
    })
    return this.loaded
  }

  protected openDatabase(target: TargetConfig): Database {
    return new Database({
      ...target.database,
      onPoolError: (error) => this.warn(`database connection dropped (target ${target.name}): ${error.message}`),
    })
  }

  /** Opens a target's database, checks it answers, runs the work, and always closes the pool. */
  protected async withTargetDatabase<T>(target: TargetConfig, work: (db: Database) => Promise<T>, ping = true): Promise<T> {
    const db = this.openDatabase(target)
    try {
      if (ping) await db.ping()
      return await work(db)
    } finally {
      await db.close().catch(() => undefined)
    }
  }

  /** The one target a command works on: --target, or the only one there is. */
  protected selectedTarget(loaded: LoadedConfig, flags: { target?: string }): TargetConfig {
    if (flags.target !== undefined) return findTarget(loaded.config, flags.target)
    if (loaded.config.targets.length > 1) {
      throw configError(
        `this configuration has ${loaded.config.targets.length} targets (${loaded.config.targets.map((t) => t.name).join(', ')}); pick one with --target`,
      )
    }
    return loaded.config.targets[0]!
  }

  protected async withDatabase<T>(loaded: LoadedConfig, work: (db: Database) => Promise<T>, flags: { target?: string } = {}): Promise<T> {
    return this.withTargetDatabase(this.selectedTarget(loaded, flags), work)
  }

  /**
   * The one session table a command works on (--target and --table select it), catalog-checked,
   * with its database: what the session use cases take.
   */
  protected async withSession<T>(
    loaded: LoadedConfig,
    flags: { target?: string },
    work: (handle: SessionHandle) => Promise<T>,
  ): Promise<T> {
    const ref = selectTable(loaded.config, { target: flags.target, table: loaded.config.fleet ? loaded.tableFlags.table : undefined })
    const override = loaded.tableFlags.orphanAfter
    const table = override ? { ...ref.table, orphanAfter: override.seconds } : ref.table
    return this.withTargetDatabase(ref.target, async (db) =>
      work({ db, table: await resolveSessionTable(db, table, ref.target.name), config: loaded.config }),
    )
  }

  /** Human output only: --json prints the returned object and nothing else. */
  protected say(message = ''): void {
    this.log(message)
  }

  protected override catch(error: Error & { exitCode?: number }): Promise<unknown> {
    const { message, exit, hint, kind } = classify(error)
    process.exitCode = exit
    if (this.jsonEnabled()) {
      this.logJson({ error: { kind, exitCode: exit, message, ...(hint ? { hint } : {}) } })
      return Promise.resolve(undefined)
    }
    // Printed as is: oclif's renderer re-wraps and prefixes each line, which breaks grep in scripts.
    process.stderr.write(`Error: ${message}\n${hint ? `  hint: ${hint}\n` : ''}`)
    throw new Errors.ExitError(exit)
  }
}

const KIND_BY_CODE = Object.fromEntries(Object.entries(ExitCode).map(([kind, code]) => [code, kind])) as Record<number, string>

function classify(error: Error): { message: string; exit: number; hint?: string; kind: string } {
  if (error instanceof WardenError)
    return { message: error.message, exit: error.exitCode, hint: error.hint, kind: KIND_BY_CODE[error.exitCode] ?? 'error' }
  // oclif's own flag/argument parse errors exit 2, which Warden reserves for "critical".
  if (error instanceof Errors.CLIError && 'parse' in error)
    return { message: error.message.replace(/\nSee more help with --help$/, ''), exit: ExitCode.usage, hint: 'see --help', kind: 'usage' }
  // A flag's own parse function failing (Flags.integer min/max, say) reaches us as a plain Error
  // that oclif relabels "Parsing --flag \n\t<reason>\nSee more help with --help".
  const flagParse = /^Parsing (--[\w-]+) \n\t([\s\S]*?)(?:\nSee more help with --help)?$/.exec(error.message)
  if (flagParse) return { message: `${flagParse[1]}: ${flagParse[2]}`, exit: ExitCode.usage, hint: 'see --help', kind: 'usage' }
  if (error instanceof Errors.ExitError) throw error
  const sqlstate = (error as { code?: string }).code
  return { message: sqlstate ? `database error ${sqlstate}: ${error.message}` : error.message, exit: ExitCode.failed, kind: 'failed' }
}
