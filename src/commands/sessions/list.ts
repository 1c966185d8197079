import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { orphanAfterFlag, sessionFlagValues, tableFlag, targetFlag } from '../../cli/flags.js'
import { age, table as renderTable, timestamp } from '../../cli/render.js'
import { DURATION_EXPECTED, parseDuration } from '../../core/duration.js'
import { usageError } from '../../core/errors.js'
import type { SessionRow } from '../../sessions/inspect.js'
import { list, SESSION_STATES, type SessionState } from '../../sessions/operations.js'

const STATES = SESSION_STATES
type State = SessionState

export default class SessionsList extends WardenCommand {
  static override summary = 'List sessions of the mapped table.'

  static override description = `--state active: open sessions, most silent first; orphaned: open and silent past orphanAfter; recent: started within --since, newest first; closed; all.`

  static override examples = [
    '<%= config.bin %> sessions list',
    '<%= config.bin %> sessions list --state orphaned --group support-agent --limit 20',
    '<%= config.bin %> sessions list --state recent --since 1h --json',
  ]

  static override flags = {
    state: Flags.string({ description: 'which sessions', options: [...STATES], default: 'active' }),
    group: Flags.string({ description: 'only this group (repeatable)', multiple: true }),
    since: Flags.string({ description: 'with --state recent: started within this long, e.g. 1h', default: '24h' }),
    limit: Flags.integer({ description: 'at most this many rows', default: 50, min: 1, max: 10_000 }),
    target: targetFlag,
    table: tableFlag,
    'orphan-after': orphanAfterFlag,
  }

  async run(): Promise<{ state: State; count: number; total: number; hasMore: boolean; sessions: SessionRow[] }> {
    const { flags } = await this.parse(SessionsList)
    const state = flags.state as State
    const since = parseDuration(flags.since)
    if (since === undefined) throw usageError(`--since ${JSON.stringify(flags.since)}: expected ${DURATION_EXPECTED}`)
    const loaded = this.loadConfig(flags, sessionFlagValues(flags))
    const {
      rows: sessions,
      total,
      hasMore,
    } = await this.withSession(loaded, flags, (handle) =>
      list(handle, { state, groups: flags.group, sinceSeconds: since, limit: flags.limit }),
    )
    this.say(
      sessions.length === 0
        ? `no ${state} sessions`
        : renderTable(sessions, [
            { header: 'id', value: (r) => r.id },
            { header: 'group', value: (r) => r.group },
            { header: 'open', value: (r) => (r.open ? 'yes' : 'no') },
            { header: 'started', value: (r) => timestamp(r.startedAt) },
            { header: 'age', value: (r) => age(r.ageSeconds), align: 'right' },
            { header: 'silent for', value: (r) => (r.open ? age(r.silentSeconds) : '-'), align: 'right' },
          ]) + (hasMore ? `\n… ${total - sessions.length} more (${total} in all): raise --limit to see them` : ''),
    )
    return { state, count: sessions.length, total, hasMore, sessions }
  }
}
