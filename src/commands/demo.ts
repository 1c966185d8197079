import { join } from 'node:path'
import { constants, tmpdir } from 'node:os'
import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { usageError } from '../core/errors.js'
import { parseMs } from '../llm/options.js'
import { renderDemo, renderKeepRunning, renderNextSteps, renderStarted, renderStopped } from '../demo/render.js'
import { demoConfig, demoJson, randomSeed, runDemo, seedDemo, type DemoJson, type DemoServerInfo } from '../demo/run-demo.js'
import type { StackSummary } from '../demo/stack.js'
import { DemoInterrupted, withDemoServer } from '../demo/server.js'

export default class Demo extends WardenCommand {
  static override summary = 'Run the whole product on an embedded PostgreSQL 18: no setup, nothing left behind.'

  static override description = `Starts a throwaway PostgreSQL, runs \`db migrate\`, creates conversation_sessions from examples/conversation_sessions/schema.sql and fills it with thousands of sessions of several agent roles over the last week, some of them orphaned (up to 444 h, as in the websocket post-mortem). Then it runs what \`warden serve --chat\` runs, with fast settings: /metrics, the admin API (with an admin token generated for the run and printed once), the scheduler (orphan sweep every 30 s, applied, with orphanAfter 2m; doctor every 15 s), and the reference chat path on a mock LLM. Virtual users chat through /chat over HTTP, and some of them vanish without closing their session row, so new orphans keep appearing; a small app (application_name demo-hold-app) holds a transaction across slow LLM calls, so \`warden pool probe\` and \`warden doctor\` have something to find. It prints the URLs, the token and commands to paste into another terminal, then a line starting with "ready:".

It runs until Ctrl-C or SIGTERM (or for --duration), then stops the traffic, the service, the mock LLMs and PostgreSQL and removes the data dir (unless --keep).

--quick runs the one-shot walk-through instead: seed, open and orphaned sessions by group, daily stats, a sweep dry run and the sweep, then stop (with --keep-running the database stays up until Ctrl-C).`

  static override examples = [
    '<%= config.bin %> demo                       # the whole stack until Ctrl-C, service on 127.0.0.1:9477',
    '<%= config.bin %> demo --duration 2m --port 0 --pg-port 55432',
    '<%= config.bin %> demo --quick',
    '<%= config.bin %> demo --quick --keep-running',
    '<%= config.bin %> demo --quick --sessions 20000 --seed 42 --json',
    '<%= config.bin %> demo --quick --pg-port 55432 --keep   # a fixed port, and the data dir kept for a look afterwards',
  ]

  static override flags = {
    quick: Flags.boolean({ description: 'the one-shot walk-through (seed, summary, stats, sweep) instead of the running stack' }),
    sessions: Flags.integer({ description: 'how many sessions to seed', default: 5000, min: 10, max: 200_000 }),
    seed: Flags.integer({
      description: 'random seed: the same seed gives the same sessions (default: a random one, printed)',
      min: 1,
      max: 2 ** 31 - 1,
    }),
    duration: Flags.string({ description: 'stop by itself after this long, e.g. 60s, 10m (default: run until Ctrl-C)' }),
    port: Flags.integer({
      description: "port of the demo's service: metrics, API, chat (default 9477; 0 picks a free one)",
      min: 0,
      max: 65_535,
    }),
    'pg-port': Flags.integer({ description: 'port for the embedded PostgreSQL (default: a free one)', min: 1, max: 65_535 }),
    'keep-running': Flags.boolean({ description: 'with --quick: keep PostgreSQL up after the walk-through, until Ctrl-C' }),
    keep: Flags.boolean({ description: 'keep the data dir when PostgreSQL stops' }),
  }

  async run(): Promise<DemoJson | StackJson> {
    const { flags } = await this.parse(Demo)
    // Silently ignoring them would let a user believe the demo touched their database.
    if (flags['database-url'] !== undefined || flags.config !== undefined) {
      throw usageError(
        'demo runs its own embedded PostgreSQL and the example mapping; --database-url and --config are not used',
        'to sweep your own table, run `warden sessions sweep --database-url ...`',
      )
    }
    if (flags.quick) {
      if (flags.port !== undefined)
        throw usageError(
          "--port is the port of the demo's service, which --quick does not start",
          'use --pg-port for the embedded PostgreSQL',
        )
      if (flags.duration !== undefined)
        throw usageError(
          '--duration applies to the running stack, not to --quick',
          'use --quick --keep-running to keep the database up until Ctrl-C',
        )
    } else if (flags['keep-running']) {
      throw usageError('--keep-running goes with --quick: the full demo keeps running anyway', 'drop --keep-running, or add --quick')
    }
    const durationMs = flags.duration === undefined ? null : parseMs('duration', flags.duration)
    const seed = flags.seed ?? randomSeed()
    const onStarting = () => this.say('starting embedded PostgreSQL...')
    try {
      if (!flags.quick)
        return await this.runStack({
          seed,
          sessions: flags.sessions,
          port: flags.port ?? 9477,
          pgPort: flags['pg-port'],
          keep: flags.keep,
          durationMs,
          onStarting,
        })
      const { value, keptDataDir } = await withDemoServer(
        { port: flags['pg-port'], keep: flags.keep, onStarting },
        async (server, control) => {
          const info: DemoServerInfo = {
            url: server.url,
            port: server.port,
            dataDir: server.dataDir,
            keepRunning: Boolean(flags['keep-running']),
            keepDataDir: Boolean(flags.keep),
          }
          this.say(renderStarted(info))
          const loaded = demoConfig(server.url)
          const result = await this.withDatabase(loaded, (db) => runDemo(db, loaded.config, { sessions: flags.sessions, seed }))
          this.say(renderDemo(result))
          if (flags['keep-running']) {
            this.say(renderKeepRunning(this.config.bin, info, result.stats.days))
            // --json keeps stdout for the one result object; scripts still need the URL now.
            if (this.jsonEnabled()) process.stderr.write(`database URL: ${server.url}\n`)
            await control.untilStopSignal()
            this.say('\nstopping...')
          } else {
            this.say(renderNextSteps(this.config.bin))
          }
          return { result, info }
        },
      )
      this.say(renderStopped(keptDataDir))
      return demoJson(value.result, { ...value.info, dataDir: keptDataDir })
    } catch (error) {
      if (!(error instanceof DemoInterrupted)) throw error
      process.stderr.write(`warden demo: ${error.message}\n`)
      // The shell convention for "ended by a signal", so a script can tell Ctrl-C from failure.
      return this.exit(128 + constants.signals[error.signal])
    }
  }

  /** The running stack: seed, then service + chat + traffic + hold app until a signal or --duration. */
  private async runStack(o: {
    seed: number
    sessions: number
    port: number
    pgPort?: number
    keep: boolean
    durationMs: number | null
    onStarting: () => void
  }): Promise<StackJson> {
    // The stack (service, chat path, SDK, scheduler) is loaded only by the mode that runs it.
    const [{ stackConfig, startDemoStack }, { renderSeeded, renderStackReady, renderStackStopped }] = await Promise.all([
      import('../demo/stack.js'),
      import('../demo/render-stack.js'),
    ])
    const { value, keptDataDir } = await withDemoServer(
      { port: o.pgPort, keep: o.keep, onStarting: o.onStarting },
      async (server, control) => {
        // Listening from here on: a Ctrl-C during start-up stops what has started, and exits 0 like a later one.
        let stopRequested = false
        const signal = control.untilStopSignal().then((s) => ((stopRequested = true), s))
        this.say(renderStarted({ url: server.url, port: server.port, dataDir: server.dataDir, keepRunning: true, keepDataDir: o.keep }))
        // Seeded with the stack's orphanAfter (2m), so idle sessions and orphans sit on either side of it.
        const seeding = stackConfig(server.url, o.port, 'x'.repeat(16))
        const seeded = await this.withDatabase(seeding, (db) => seedDemo(db, seeding.config, { sessions: o.sessions, seed: o.seed }))
        this.say(renderSeeded(seeded.migration, seeded.dataset.report, seeding.config.sessions.table))
        const base = {
          database: { url: server.url, port: server.port, dataDir: server.dataDir as string | null },
          seed: seeded.dataset.report,
        }
        if (stopRequested) return { ...base, url: null, stopped: null }
        const configPath = join(server.dataDir ?? tmpdir(), 'warden.demo.yaml')
        const stack = await startDemoStack({ databaseUrl: server.url, port: o.port, configPath })
        if (!stopRequested) {
          this.say(
            renderStackReady({
              bin: this.config.bin,
              url: stack.url,
              databaseUrl: server.url,
              configPath,
              adminToken: stack.adminToken,
              durationMs: o.durationMs,
              keepDataDir: o.keep,
            }),
          )
          // --json keeps stdout for the result; the token and URL are still needed while it runs.
          if (this.jsonEnabled()) process.stderr.write(`ready: ${stack.url} admin token ${stack.adminToken}\n`)
          let timer: NodeJS.Timeout | undefined
          const elapsed =
            o.durationMs === null
              ? new Promise<never>(() => undefined)
              : new Promise<string>((resolve) => (timer = setTimeout(() => resolve('duration'), o.durationMs!)))
          const why = await Promise.race([signal, elapsed])
          clearTimeout(timer)
          this.say(`\nstopping (${why === 'duration' ? `--duration ${Math.round(o.durationMs! / 1000)}s elapsed` : why})...`)
        }
        const stopped = await stack.stop()
        this.say(renderStackStopped(stopped))
        return { ...base, url: stack.url, stopped }
      },
    )
    this.say(renderStopped(keptDataDir))
    return { ...value, database: { ...value.database, dataDir: keptDataDir } }
  }
}

export interface StackJson {
  database: { url: string; port: number; dataDir: string | null }
  seed: unknown
  url: string | null
  stopped: StackSummary | null
}
