import { constants } from 'node:os'
import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { usageError } from '../core/errors.js'
import { renderDemo, renderKeepRunning, renderNextSteps, renderStarted, renderStopped } from '../demo/render.js'
import { demoConfig, demoJson, randomSeed, runDemo, type DemoJson, type DemoServerInfo } from '../demo/run-demo.js'
import { DemoInterrupted, withDemoServer } from '../demo/server.js'

export default class Demo extends WardenCommand {
  static override description = `Run the whole tour on an embedded PostgreSQL 18: no setup, nothing left behind.

Starts a throwaway PostgreSQL, runs \`db migrate\`, creates conversation_sessions from examples/conversation_sessions/schema.sql and fills it with thousands of sessions of several agent roles over the last week, some of them orphaned (up to 444 h, as in the websocket post-mortem). Then it shows the open and orphaned sessions by group, the daily stats, a sweep dry run and the sweep itself, with the same code and output as the real commands.

Without --keep-running the server stops at the end. With it, the server stays up until Ctrl-C and the demo prints a --database-url for trying the other commands. Ctrl-C or SIGTERM at any point stops PostgreSQL and removes its data dir (unless --keep). With --json, the database URL of --keep-running goes to stderr.`

  static override examples = [
    '<%= config.bin %> demo',
    '<%= config.bin %> demo --keep-running',
    '<%= config.bin %> demo --sessions 20000 --seed 42 --json',
    '<%= config.bin %> demo --port 55432 --keep   # a fixed port, and the data dir kept for a look afterwards',
  ]

  static override flags = {
    sessions: Flags.integer({ description: 'how many sessions to seed', default: 5000, min: 10, max: 200_000 }),
    seed: Flags.integer({ description: 'random seed: the same seed gives the same sessions (default: a random one, printed)', min: 1, max: 2 ** 31 - 1 }),
    'keep-running': Flags.boolean({ description: 'keep PostgreSQL up after the demo, until Ctrl-C' }),
    keep: Flags.boolean({ description: 'keep the data dir when PostgreSQL stops' }),
    port: Flags.integer({ description: 'port for the embedded PostgreSQL (default: a free one)', min: 1, max: 65_535 }),
  }

  async run(): Promise<DemoJson> {
    const { flags } = await this.parse(Demo)
    // Silently ignoring them would let a user believe the demo touched their database.
    if (flags['database-url'] !== undefined || flags.config !== undefined) {
      throw usageError('demo runs its own embedded PostgreSQL and the example mapping; --database-url and --config are not used', 'to sweep your own table, run `warden sessions sweep --database-url ...`')
    }
    const seed = flags.seed ?? randomSeed()
    const onStarting = () => this.say('starting embedded PostgreSQL...')
    try {
      const { value, keptDataDir } = await withDemoServer({ port: flags.port, keep: flags.keep, onStarting }, async (server, control) => {
        const info: DemoServerInfo = { url: server.url, port: server.port, dataDir: server.dataDir, keepRunning: Boolean(flags['keep-running']), keepDataDir: Boolean(flags.keep) }
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
      })
      this.say(renderStopped(keptDataDir))
      return demoJson(value.result, { ...value.info, dataDir: keptDataDir })
    } catch (error) {
      if (!(error instanceof DemoInterrupted)) throw error
      process.stderr.write(`warden demo: ${error.message}\n`)
      // The shell convention for "ended by a signal", so a script can tell Ctrl-C from failure.
      return this.exit(128 + constants.signals[error.signal])
    }
  }
}
