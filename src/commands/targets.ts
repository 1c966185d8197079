import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { table } from '../cli/render.js'
import { formatDuration } from '../core/duration.js'
import { ExitCode } from '../core/errors.js'
import { inspectTargets, type TargetState } from '../fleet/inspect.js'

export default class Targets extends WardenCommand {
  static override summary = 'List the configured targets (databases) and their session tables, with their state.'

  static override description = `For each target: whether Warden reaches it, and for each session table whether its mapping matches the table, with its open and orphaned sessions. The single-table configuration is one target named "default".

Exit codes: 0 when every target answers and every mapping matches, 3 when a target cannot be reached, 78 when a mapping does not match its table.`

  static override examples = ['<%= config.bin %> targets', '<%= config.bin %> targets --json', '<%= config.bin %> targets --target billing']

  static override flags = {
    target: Flags.string({ description: 'only this target' }),
  }

  async run(): Promise<{ targets: TargetState[] }> {
    const { flags } = await this.parse(Targets)
    const loaded = this.loadConfig(flags)
    const chosen = flags.target === undefined ? loaded.config.targets : [this.selectedTarget(loaded, flags)]
    const targets = await inspectTargets(chosen, (target) => this.openDatabase(target))
    const rows = targets.flatMap((target) =>
      target.tables.map((t) => ({
        target: target.name,
        state: !target.reachable ? 'unreachable' : t.mapping.ok ? 'ok' : 'mapping error',
        table: t.name === t.table ? t.table : `${t.name} (${t.table})`,
        orphanAfter: formatDuration(t.orphanAfterSeconds),
        open: t.open ?? '-',
        orphaned: t.orphaned ?? '-',
      })),
    )
    this.say(
      table(rows, [
        { header: 'target', value: (r) => r.target },
        { header: 'state', value: (r) => r.state },
        { header: 'table', value: (r) => r.table },
        { header: 'orphan after', value: (r) => r.orphanAfter, align: 'right' },
        { header: 'open', value: (r) => String(r.open), align: 'right' },
        { header: 'orphaned', value: (r) => String(r.orphaned), align: 'right' },
      ]),
    )
    for (const target of targets) {
      if (!target.reachable) this.say(`${target.name}: ${target.error ?? 'unreachable'}`)
      for (const t of target.tables) if (!t.mapping.ok) this.say(`${target.name}/${t.name}: ${t.mapping.error}`)
    }
    const unreachable = targets.some((target) => !target.reachable)
    const mismatched = targets.some((target) => target.tables.some((t) => !t.mapping.ok))
    process.exitCode = unreachable ? ExitCode.unavailable : mismatched ? ExitCode.config : ExitCode.ok
    return { targets }
  }
}
