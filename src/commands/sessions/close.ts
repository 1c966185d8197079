import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { renderCloseReport } from '../../cli/close-report.js'
import { confirm } from '../../cli/confirm.js'
import { batchSizeFlag, batchTargetFlag, maxRowsFlag, sessionFlagValues, tableFlag, targetFlag } from '../../cli/flags.js'
import { progressBar } from '../../cli/progress.js'
import { byGroupLine } from '../../cli/render.js'
import { DURATION_EXPECTED, parseDuration } from '../../core/duration.js'
import { ExitCode, usageError, WardenError } from '../../core/errors.js'
import { close, preview, unwrap } from '../../sessions/operations.js'
import { isEmptyFilter, type BulkCloseFilter, type BulkCloseResult } from '../../sessions/sweep.js'

export default class SessionsClose extends WardenCommand {
  static override summary = 'Close open sessions in bulk, for shutdowns and incidents.'

  static override description = `A filter is required: --all, or any of --older-than, --group, --id (filters combine with AND; --group and --id repeat). Shows what it will close and asks before doing it, unless --yes; without a terminal and without --yes it changes nothing and exits 4. Batched and audited like a sweep: batches adapt toward sweep.batchTarget (default 300ms each) unless --batch-size fixes their size.`

  static override examples = [
    '<%= config.bin %> sessions close --group billing-agent --dry-run',
    '<%= config.bin %> sessions close --older-than 7d --yes',
    '<%= config.bin %> sessions close --id 3f1c... --id 9a2b... --json --yes',
    '<%= config.bin %> sessions close --all --yes   # e.g. before a maintenance window',
    '<%= config.bin %> sessions close --older-than 30d --yes --batch-size 500   # fixed batches of 500',
  ]

  static override flags = {
    all: Flags.boolean({ description: 'every open session (cannot be combined with other filters)' }),
    'older-than': Flags.string({ description: 'sessions started longer ago than this, e.g. 12h, 7d' }),
    group: Flags.string({ description: 'sessions of this group (repeatable)', multiple: true }),
    id: Flags.string({ description: 'this session id (repeatable)', multiple: true }),
    yes: Flags.boolean({ char: 'y', description: 'do not ask for confirmation' }),
    'dry-run': Flags.boolean({ description: 'only show what would be closed' }),
    target: targetFlag,
    table: tableFlag,
    'batch-size': batchSizeFlag,
    'batch-target': batchTargetFlag,
    'max-rows': maxRowsFlag,
  }

  async run(): Promise<BulkCloseResult['json']> {
    const { flags } = await this.parse(SessionsClose)
    const filter = this.filterFrom(flags)
    const loaded = this.loadConfig(flags, sessionFlagValues(flags))
    const progress = progressBar(!flags['dry-run'] && !this.jsonEnabled())
    const result = await this.withSession(loaded, flags, async (handle) => {
      const settings = { apply: flags['dry-run'] !== true, command: 'sessions close', onProgress: progress.update }
      if (!flags['dry-run'] && !flags.yes) {
        const matched = await preview(handle, filter)
        const count = matched.reduce((sum, g) => sum + g.count, 0)
        const byGroup = Object.fromEntries(matched.map((g) => [g.group, g.count]))
        const { table } = handle
        if (count > 0)
          await confirm(`close ${count} open session(s) of ${table.name.schema}.${table.name.name} (${byGroupLine(byGroup)})`, '--yes')
      }
      try {
        return unwrap(await close(handle, filter, settings))
      } catch (error) {
        throw this.explainBadId(error, filter, handle.table.config.columns.id)
      }
    }).finally(progress.stop)
    this.say(renderCloseReport(result.report, 'sessions'))
    return result.json
  }

  /** --id values are the only user input bound to a typed column here (22P02 and friends). */
  private explainBadId(error: unknown, filter: BulkCloseFilter, idColumn: string): unknown {
    if (!filter.ids?.length || !(error instanceof WardenError) || error.exitCode !== ExitCode.usage || !error.sqlstate) return error
    const reason = error.message.replace(/^invalid value for statement \S*: /, '')
    return usageError(
      `--id ${filter.ids.map((id) => JSON.stringify(id)).join(' --id ')}: not a valid id for sessions.columns.id = "${idColumn}" (${reason})`,
    )
  }

  private filterFrom(flags: { all: boolean; 'older-than'?: string; group?: string[]; id?: string[] }): BulkCloseFilter {
    let olderThanSeconds: number | undefined
    if (flags['older-than'] !== undefined) {
      olderThanSeconds = parseDuration(flags['older-than'])
      if (olderThanSeconds === undefined)
        throw usageError(`--older-than ${JSON.stringify(flags['older-than'])}: expected ${DURATION_EXPECTED}`)
    }
    const filter: BulkCloseFilter = { all: flags.all, olderThanSeconds, groups: flags.group, ids: flags.id }
    if (flags.all && !isEmptyFilter(filter))
      throw usageError('--all closes every open session and cannot be combined with --older-than, --group or --id')
    if (!flags.all && isEmptyFilter(filter))
      throw usageError('sessions close needs a filter: --all, --older-than <duration>, --group <name> or --id <id>')
    return filter
  }
}
