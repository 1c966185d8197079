import { WardenCommand } from '../../cli/base-command.js'
import { migrate, type MigrationResult } from '../../db/migrate.js'

export default class DbMigrate extends WardenCommand {
  static override summary = "Create or upgrade Warden's own tables (audit log)."

  static override description = 'Safe to run any number of times, from several hosts at once.'

  static override examples = [
    '<%= config.bin %> db migrate',
    '<%= config.bin %> db migrate --database-url postgres://warden@db:5432/app --json',
  ]

  async run(): Promise<MigrationResult> {
    const { flags } = await this.parse(DbMigrate)
    const loaded = this.loadConfig(flags)
    const result = await this.withDatabase(loaded, (db) => migrate(db, loaded.config.wardenSchema))
    if (result.applied.length === 0) this.say(`schema ${result.schema} is up to date (version ${result.currentVersion})`)
    for (const step of result.applied) this.say(`applied ${result.schema} migration ${step.version}: ${step.name}`)
    return result
  }
}
