import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { migrate, type MigrationResult } from '../../db/migrate.js'

type TargetMigration = MigrationResult & { target: string }

export default class DbMigrate extends WardenCommand {
  static override summary = "Create or upgrade Warden's own tables in every target's database."

  static override description = `The audit log, run coordination and the reference chat tables, in every target's database or in --target's. Safe to run any number of times, from several hosts at once.

--json: one target's result, {target, schema, applied, currentVersion}; with several targets, {targets: [...]}.`

  static override examples = [
    '<%= config.bin %> db migrate',
    '<%= config.bin %> db migrate --database-url postgres://warden@db:5432/app --json',
    '<%= config.bin %> db migrate --target billing',
  ]

  static override flags = {
    target: Flags.string({ description: 'migrate only this target (default: every target of the configuration)' }),
  }

  async run(): Promise<TargetMigration | { targets: TargetMigration[] }> {
    const { flags } = await this.parse(DbMigrate)
    const loaded = this.loadConfig(flags)
    const targets = flags.target === undefined ? loaded.config.targets : [this.selectedTarget(loaded, flags)]
    const results: TargetMigration[] = []
    for (const target of targets) {
      const result = await this.withTargetDatabase(target, (db) => migrate(db, loaded.config.wardenSchema))
      const where = targets.length > 1 ? ` (target ${target.name})` : ''
      if (result.applied.length === 0) this.say(`schema ${result.schema} is up to date (version ${result.currentVersion})${where}`)
      for (const step of result.applied) this.say(`applied ${result.schema} migration ${step.version}: ${step.name}${where}`)
      results.push({ target: target.name, ...result })
    }
    return results.length === 1 ? results[0]! : { targets: results }
  }
}
