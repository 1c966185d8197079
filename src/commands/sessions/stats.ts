import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { orphanAfterFlag, sessionFlagValues, tableFlag, targetFlag } from '../../cli/flags.js'
import { renderDailyStats } from '../../cli/render.js'
import type { DailyStatsRow } from '../../sessions/inspect.js'
import { stats } from '../../sessions/operations.js'

export default class SessionsStats extends WardenCommand {
  static override summary = 'Per-day session totals: started, average duration of the closed ones, still active, orphaned.'

  static override description = `This is the daily health query from the websocket post-mortem: a day whose "still active" never drains is a day of orphans.`

  static override examples = ['<%= config.bin %> sessions stats', '<%= config.bin %> sessions stats --days 30 --by-group --json']

  static override flags = {
    days: Flags.integer({ description: 'how many days back, today included', default: 7, min: 1, max: 3660 }),
    'by-group': Flags.boolean({ description: 'one row per day and group' }),
    target: targetFlag,
    table: tableFlag,
    'orphan-after': orphanAfterFlag,
  }

  async run(): Promise<{ days: number; byGroup: boolean; rows: DailyStatsRow[] }> {
    const { flags } = await this.parse(SessionsStats)
    const loaded = this.loadConfig(flags, sessionFlagValues(flags))
    const rows = await this.withSession(loaded, flags, (handle) => stats(handle, { days: flags.days, byGroup: flags['by-group'] }))
    this.say(rows.length === 0 ? `no sessions started in the last ${flags.days} day(s)` : renderDailyStats(rows, flags['by-group']))
    return { days: flags.days, byGroup: flags['by-group'], rows }
  }
}
