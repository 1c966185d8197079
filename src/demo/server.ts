import { ExitCode, WardenError } from '../core/errors.js'
import { untilStopSignal, type StopSignal } from '../core/signals.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../embedded/embedded-postgres.js'

/** Ctrl-C (or SIGTERM) arrived while the demo was still working, not while it waited for one. */
export class DemoInterrupted extends Error {
  constructor(readonly signal: StopSignal) {
    super(`interrupted by ${signal}; the embedded PostgreSQL was stopped`)
    this.name = 'DemoInterrupted'
  }
}

export interface DemoServerOptions {
  port?: number
  /** keep the data directory after the server stops */
  keep: boolean
  /** called once Ctrl-C is handled, just before the ~1 s of initdb and start */
  onStarting?: () => void
}

export interface DemoServerControl {
  /** resolves on the first SIGINT/SIGTERM; the server is stopped after work returns */
  untilStopSignal: () => Promise<StopSignal>
}

export interface DemoServerOutcome<T> {
  value: T
  /** where the data directory was kept (--keep), or null when it was removed */
  keptDataDir: string | null
}

/**
 * Runs work against a throwaway PostgreSQL and always takes it down again: on return, on error,
 * and on the first SIGINT/SIGTERM. Our listeners go away after the first signal, so a second
 * Ctrl-C gets Node's default and ends the process at once if stopping ever hangs (the next start
 * then sweeps what was left).
 */
export async function withDemoServer<T>(
  options: DemoServerOptions,
  work: (server: EmbeddedPostgres, control: DemoServerControl) => Promise<T>,
): Promise<DemoServerOutcome<T>> {
  const signals = untilStopSignal()
  let server: EmbeddedPostgres | undefined
  process.on('uncaughtException', survivePostgresShutdown)
  try {
    options.onStarting?.()
    const starting = startEmbeddedPostgres({ port: options.port, keep: options.keep })
    const started = await Promise.race([
      starting.then(
        (s) => ({ server: s }),
        (error: unknown) => ({ error }),
      ),
      signals.signal.then((signal) => ({ signal })),
    ])
    if ('signal' in started) {
      // initdb cannot be cancelled half-way; let it finish, then take the server down with us.
      await starting.then(
        (s) => s.stop(),
        () => undefined,
      )
      throw new DemoInterrupted(started.signal)
    }
    if ('error' in started) throw startFailure(started.error)
    server = started.server

    let waitingForSignal = false
    const control: DemoServerControl = {
      untilStopSignal: () => {
        waitingForSignal = true
        return signals.signal
      },
    }
    const working = work(server, control)
    // Raced below: if a signal wins, work's late rejection (its connections dropped) is expected.
    working.catch(() => undefined)
    const outcome = await Promise.race([
      working.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      signals.signal.then((signal) => ({ signal })),
    ])
    if ('signal' in outcome && !waitingForSignal) throw new DemoInterrupted(outcome.signal)
    if ('error' in outcome) {
      // A Ctrl-C in a terminal reaches postgres too; its dropped connections can beat our handler.
      const late = await Promise.race([signals.signal, delay(100).then(() => undefined)])
      throw late ? new DemoInterrupted(late) : outcome.error
    }
    const value = 'value' in outcome ? outcome.value : await working
    const keptDataDir = await server.stop()
    server = undefined
    return { value, keptDataDir }
  } finally {
    if (server) await server.stop()
    signals.dispose()
    process.removeListener('uncaughtException', survivePostgresShutdown)
  }
}

/**
 * A terminal's Ctrl-C also reaches the demo's own postgres, whose fast shutdown ends every
 * connection at once (57P01). Checked-out clients listen for that, but under load one such
 * error still surfaced as an unhandled 'error' event of a pg client whose owner we could not
 * pin down; in the demo, whose database is ours and going down on purpose, it must not crash
 * the shutdown. Anything else stays fatal, as it would be without this listener.
 */
function survivePostgresShutdown(error: Error): void {
  if ((error as { code?: string }).code === '57P01') {
    process.stderr.write(`warden demo: a connection was ended by the embedded PostgreSQL shutting down (${error.message})\n`)
    return
  }
  process.stderr.write(`${error.stack ?? String(error)}\n`)
  process.exit(1)
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function startFailure(error: unknown): WardenError {
  // The embedded server's own errors already name the cause and the fix.
  if (error instanceof WardenError) return error
  const text = error instanceof Error ? error.message : String(error)
  // The wrapper appends postgres's last log lines; the FATAL/ERROR ones say why.
  const reasons = text.split('\n').filter((line) => /FATAL|PANIC|ERROR|could not|failed|cannot/i.test(line))
  const reason = [...new Set(reasons)].slice(0, 4).join('\n  ') || text
  return new WardenError(
    `could not start the embedded PostgreSQL: ${reason}`,
    ExitCode.unavailable,
    'is --port free? Omit it to let the demo pick a free port.',
  )
}
