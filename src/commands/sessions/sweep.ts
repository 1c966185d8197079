import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { renderCloseReport } from '../../cli/close-report.js'
import { batchSizeFlag, batchTargetFlag, maxRowsFlag, orphanAfterFlag, sessionFlagValues, tableFlag, targetFlag } from '../../cli/flags.js'
import { progressBar } from '../../cli/progress.js'
import { usageError } from '../../core/errors.js'
import { sweep, unwrap } from '../../sessions/operations.js'
import type { SweepResult } from '../../sessions/sweep.js'

export default class SessionsSweep extends WardenCommand {
  static override summary = 'Find orphaned sessions (open, and silent for longer than orphanAfter) and close them.'

  static override description = `Dry run unless --apply. With --apply, sessions are closed in batches, each its own short transaction: sized to take about sweep.batchTarget (default 300ms; from 1000 rows, at most ×4 or ÷4 a step, at most 100000), or exactly --batch-size rows when it (or sweep.batchSize, WARDEN_BATCH_SIZE) is given; rows a live writer holds are skipped (never waited on) and left for the next run. Only one sweep or close runs per table at a time, across hosts: a second one exits with code 5. Every run writes an audit row.`

  static override examples = [
    '<%= config.bin %> sessions sweep',
    '<%= config.bin %> sessions sweep --orphan-after 6h --json',
    '<%= config.bin %> sessions sweep --apply --json   # adaptive batches: see batching, maxBatchSize, maxBatchMs',
    '<%= config.bin %> sessions sweep --apply --batch-size 2000 --max-rows 100000   # fixed batches of 2000',
  ]

  static override flags = {
    apply: Flags.boolean({ description: 'close the orphans (default: dry run, nothing changes)' }),
    'dry-run': Flags.boolean({ description: 'only report (the default); cannot be combined with --apply' }),
    target: targetFlag,
    table: tableFlag,
    'orphan-after': orphanAfterFlag,
    'batch-size': batchSizeFlag,
    'batch-target': batchTargetFlag,
    'max-rows': maxRowsFlag,
    sample: Flags.integer({ description: 'how many orphans to show', default: 5, min: 0, max: 1000 }),
    force: Flags.boolean({
      description: 'apply despite a refused hazard: --orphan-after below 1m, or naive timestamps that look written in another time zone',
    }),
  }

  async run(): Promise<SweepResult['json']> {
    const { flags } = await this.parse(SessionsSweep)
    if (flags.apply && flags['dry-run']) throw usageError('--apply and --dry-run contradict each other: pick one')
    const loaded = this.loadConfig(flags, sessionFlagValues(flags))
    const progress = progressBar(flags.apply && !this.jsonEnabled())
    const result = await this.withSession(loaded, flags, async (handle) =>
      unwrap(
        await sweep(handle, {
          apply: flags.apply === true,
          force: flags.force,
          sample: flags.sample,
          command: 'sessions sweep',
          onProgress: progress.update,
        }),
      ),
    ).finally(progress.stop)
    this.say(renderCloseReport(result.report, 'orphaned sessions'))
    return result.json
  }
}
