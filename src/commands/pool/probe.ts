import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { DURATION_EXPECTED, parseDuration } from '../../core/duration.js'
import { usageError } from '../../core/errors.js'
import { probePool, type PoolProbe, type PoolProbeOptions } from '../../probes/pool-probe.js'
import { renderPoolProbe } from '../../cli/render-probe.js'

/** Shared with `pool watch`, which takes the same probe flags. */
export const probeFlags = {
  target: Flags.string({ description: 'the target (database) to probe; needed when the configuration has several' }),
  'long-transaction': Flags.string({ description: 'report transactions open at least this long, e.g. 30s, 5m', default: '1m' }),
  'query-length': Flags.integer({ description: 'characters of each query text to show', default: 200, min: 1, max: 100_000 }),
  'acquire-timeout': Flags.string({
    description: 'deadline for the timed acquire (connect + SELECT 1) and the PgBouncer console',
    default: '5s',
  }),
  pgbouncer: Flags.string({
    description: 'PgBouncer admin console URL, e.g. postgres://pgbouncer@127.0.0.1:6432/pgbouncer (adds SHOW POOLS/STATS)',
  }),
}

export function probeOptions(flags: {
  'long-transaction': string
  'query-length': number
  'acquire-timeout': string
  pgbouncer?: string
}): PoolProbeOptions {
  const duration = (flag: string, value: string) => {
    const seconds = parseDuration(value)
    if (seconds === undefined) throw usageError(`--${flag} ${JSON.stringify(value)}: expected ${DURATION_EXPECTED}`)
    return seconds
  }
  return {
    longTransactionSeconds: duration('long-transaction', flags['long-transaction']),
    queryLength: flags['query-length'],
    acquireTimeoutMs: Math.round(duration('acquire-timeout', flags['acquire-timeout']) * 1000),
    pgbouncerUrl: flags.pgbouncer,
  }
}

export default class PoolProbeCommand extends WardenCommand {
  static override summary = 'One-shot pool saturation report.'

  static override description = `Server side (pg_stat_activity): slots used and headroom under max_connections, connections by application and state, backends idle in a transaction (the signature of a connection held across an LLM call) with their transaction age and last query, lock waits and who blocks them, long transactions, and the timeouts in force. Then a timed acquire: one new connection and SELECT 1 under a deadline. With --pgbouncer, the PgBouncer pools (waiting clients, maxwait) and stats.

Exit 0 whenever the probe ran: findings are reported, not judged (warden doctor judges them). Exit 3 when the database cannot be reached at all.`

  static override examples = [
    '<%= config.bin %> pool probe',
    '<%= config.bin %> pool probe --long-transaction 30s --query-length 80',
    '<%= config.bin %> pool probe --pgbouncer postgres://pgbouncer@127.0.0.1:6432/pgbouncer --json',
  ]

  static override flags = probeFlags

  async run(): Promise<PoolProbe> {
    const { flags } = await this.parse(PoolProbeCommand)
    const options = probeOptions(flags)
    const loaded = this.loadConfig(flags)
    const probe = await this.withDatabase(loaded, (db) => probePool(db, options), flags)
    this.say(renderPoolProbe(probe, { width: process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : 80 }))
    return probe
  }
}
