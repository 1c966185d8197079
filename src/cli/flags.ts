import { Flags } from '@oclif/core'
import type { FlagValue } from '../core/config.js'

/** Which target (database) of the configuration: needed only when it has several. */
export const targetFlag = Flags.string({
  description: 'the target (database) to work on, by name; needed when the configuration has several',
})

/** Flags that are also config keys: parsed by the config schema, so the messages are the same everywhere. */
export const tableFlag = Flags.string({
  description:
    'the session table: with targets, one of the configured tables (by name or [schema.]table); else [schema.]table, overriding sessions.table',
})
export const orphanAfterFlag = Flags.string({
  description: 'silence after which an open session is an orphan, e.g. 30m, 2h, 7d (overrides sessions.orphanAfter)',
})
export const batchSizeFlag = Flags.string({
  description:
    'a fixed number of sessions closed per transaction (1-100000); default: batches adapt toward sweep.batchTarget (300ms) per transaction',
})
export const batchTargetFlag = Flags.string({
  description: 'how long an adaptive batch should take, e.g. 300ms, 1s (overrides sweep.batchTarget; ignored with --batch-size)',
})
export const maxRowsFlag = Flags.string({ description: 'stop after closing this many sessions' })

export function sessionFlagValues(flags: {
  table?: string
  'orphan-after'?: string
  'batch-size'?: string
  'batch-target'?: string
  'max-rows'?: string
}): FlagValue[] {
  return [
    { key: 'sessions.table', flag: '--table', value: flags.table },
    { key: 'sessions.orphanAfter', flag: '--orphan-after', value: flags['orphan-after'] },
    { key: 'sweep.batchSize', flag: '--batch-size', value: flags['batch-size'] },
    { key: 'sweep.batchTarget', flag: '--batch-target', value: flags['batch-target'] },
    { key: 'sweep.maxRows', flag: '--max-rows', value: flags['max-rows'] },
  ]
}
