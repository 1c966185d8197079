import { Flags } from '@oclif/core'
import { WardenCommand } from '../../cli/base-command.js'
import { timestamp } from '../../cli/render.js'
import { DURATION_EXPECTED, formatDuration, parseDuration } from '../../core/duration.js'
import { usageError, WardenError } from '../../core/errors.js'
import { probePool } from '../../probes/pool-probe.js'
import { renderPoolProbe } from '../../cli/render-probe.js'
import { probeFlags, probeOptions } from './probe.js'

const CLEAR_SCREEN = '\x1b[H\x1b[2J\x1b[3J'
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const

/**
 * SIGINT/SIGTERM end the loop instead of the process, so the current probe finishes and the pool
 * is closed before exit 0. A second signal means the user will not wait: exit at once.
 */
function stopOnSignals() {
  let requested = false
  let wake: (() => void) | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) process.exit(signal === 'SIGINT' ? 130 : 143)
    requested = true
    wake?.()
  }
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal)
  return {
    get requested() {
      return requested
    },
    sleep: (ms: number) =>
      new Promise<void>((resolve) => {
        if (requested) return resolve()
        const timer = setTimeout(resolve, ms)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      }),
    dispose: () => {
      for (const signal of STOP_SIGNALS) process.off(signal, onSignal)
    },
  }
}

export default class PoolWatch extends WardenCommand {
  static override summary = 'The pool probe, refreshed live.'

  static override description = `On a terminal the screen is redrawn every --interval; piped, each refresh is appended as a snapshot (with --json: one JSON object per line). A database that drops out mid-watch is shown and retried, not fatal. Ctrl-C (SIGINT) or SIGTERM stops it cleanly with exit 0.`

  static override examples = [
    '<%= config.bin %> pool watch',
    '<%= config.bin %> pool watch --interval 5s --long-transaction 30s',
    '<%= config.bin %> pool watch --count 3 --json > snapshots.ndjson',
  ]

  static override flags = {
    ...probeFlags,
    interval: Flags.string({ description: 'time between refreshes, e.g. 500ms, 2s, 1m', default: '2s' }),
    count: Flags.integer({ description: 'stop after this many refreshes (default: until interrupted)', min: 1 }),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(PoolWatch)
    const intervalSeconds = parseDuration(flags.interval)
    if (intervalSeconds === undefined) throw usageError(`--interval ${JSON.stringify(flags.interval)}: expected ${DURATION_EXPECTED}`)
    const options = probeOptions(flags)
    const loaded = this.loadConfig(flags)
    const json = this.jsonEnabled()
    const tty = Boolean(process.stdout.isTTY) && !json
    const stop = stopOnSignals()
    try {
      await this.withDatabase(
        loaded,
        async (db) => {
          for (let snapshot = 1; !stop.requested; snapshot++) {
            const at = new Date()
            let frame: string
            try {
              const probe = await probePool(db, options)
              if (json) process.stdout.write(`${JSON.stringify({ snapshot, ...probe })}\n`)
              frame = renderPoolProbe(probe, { width: tty ? process.stdout.columns || 80 : 80, maxRows: 10 })
            } catch (error) {
              // The server went away or refused us mid-watch: show it and keep trying, as a monitor should.
              if (!(error instanceof WardenError)) throw error
              if (json)
                process.stdout.write(`${JSON.stringify({ snapshot, error: { message: error.message, exitCode: error.exitCode } })}\n`)
              frame = `database unavailable: ${error.message}\n(retrying every ${formatDuration(intervalSeconds)})`
            }
            if (tty) {
              process.stdout.write(CLEAR_SCREEN)
              this.say(`warden pool watch · every ${formatDuration(intervalSeconds)} · ${timestamp(at)} · Ctrl-C to stop\n`)
              this.say(frame)
            } else {
              this.say(`=== snapshot ${snapshot} · ${timestamp(at)} ===`)
              this.say(frame)
              this.say()
            }
            if (flags.count !== undefined && snapshot >= flags.count) break
            await stop.sleep(intervalSeconds * 1000)
          }
        },
        flags,
      )
    } finally {
      stop.dispose()
    }
  }
}
