import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { chatFlags, chatSetup } from '../cli/chat-flags.js'
import { orphanAfterFlag, tableFlag } from '../cli/flags.js'
import { passwordOf } from '../core/urls.js'
import { createLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger } from '../server/logger.js'
import { startService, type Service } from '../server/service.js'

/** HTTP requests in flight get this long to finish after SIGTERM; then their connections are cut. */
const DRAIN_MS = 8_000
/** Whatever still hangs then (a statement past its timeout), the process exits anyway. */
const HARD_EXIT_MS = 10_000

export default class Serve extends WardenCommand {
  static override summary = 'Run the admin service: Prometheus metrics, health probes and the admin API.'

  static override description = `GET /metrics never waits on the database: database-derived gauges are refreshed every server.collectInterval (deadline server.collectTimeout) and a scrape reads the last values; warden_pg_up and warden_collect_last_success_timestamp_seconds show how fresh they are. GET /healthz (process alive), GET /readyz (database reachable), GET /api/sessions, /api/sessions/stats, /api/checks, /api/pool. POST /api/sweeps and POST /api/sessions/close need "Authorization: Bearer <token>" (WARDEN_ADMIN_TOKEN); without a configured token they are disabled.

Logs are JSON lines on stdout (readable lines on a terminal); secrets are redacted. SIGTERM or SIGINT: stop accepting, finish requests in flight and the running sweep batch, close the pools, exit 0 (forced after ${HARD_EXIT_MS / 1000} s).`

  static override examples = [
    '<%= config.bin %> serve',
    'WARDEN_ADMIN_TOKEN=$(openssl rand -hex 24) <%= config.bin %> serve --host 0.0.0.0 --port 9477',
    '<%= config.bin %> serve --log-format json --log-level debug',
    '<%= config.bin %> serve --no-scheduler   # API and metrics only; sweeps run from a CronJob',
    '<%= config.bin %> serve --chat --mock-latency 1s   # plus the reference chat path under /chat',
  ]

  // The command's output is its log stream; --log-format json is the machine-readable form.
  static override enableJsonFlag = false

  static override flags = {
    port: Flags.string({ char: 'p', description: 'port to listen on (overrides server.port; default 9477; 0 picks a free one)' }),
    host: Flags.string({ description: 'address to listen on (overrides server.host; default 127.0.0.1, loopback only)' }),
    'log-level': Flags.string({ description: 'log level', options: [...LOG_LEVELS], default: 'info' }),
    'log-format': Flags.string({
      description: 'auto: readable on a terminal, JSON lines otherwise',
      options: [...LOG_FORMATS],
      default: 'auto',
    }),
    scheduler: Flags.boolean({
      description:
        'run the scheduled orphan sweep and doctor (config scheduler:); replicas coordinate through PostgreSQL so each slot runs once',
      default: true,
      allowNo: true,
    }),
    table: tableFlag,
    'orphan-after': orphanAfterFlag,
    chat: Flags.boolean({
      description: 'mount the reference chat path under /chat (release before call; see `warden chat serve`)',
      helpGroup: 'CHAT',
    }),
    ...(Object.fromEntries(Object.entries(chatFlags).map(([name, flag]) => [name, { ...flag, helpGroup: 'CHAT' }])) as typeof chatFlags),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Serve)
    const loaded = this.loadConfig(flags, [
      { key: 'server.port', flag: '--port', value: flags.port },
      { key: 'server.host', flag: '--host', value: flags.host },
      { key: 'sessions.table', flag: '--table', value: flags.table },
      { key: 'sessions.orphanAfter', flag: '--orphan-after', value: flags['orphan-after'] },
    ])
    const logger = createLogger({
      level: flags['log-level'],
      format: flags['log-format'] as LogFormat,
      secrets: [loaded.config.server.adminToken, ...loaded.config.targets.map((target) => passwordOf(target.database.url))],
    })
    const chat = flags.chat
      ? await chatSetup(flags, { schema: loaded.config.wardenSchema, applicationName: loaded.config.database.applicationName, logger })
      : undefined
    try {
      const service = await startService({ config: loaded.config, logger, scheduler: flags.scheduler, chat: chat?.options })
      process.stderr.write(banner(service, loaded.config.server.adminToken !== undefined, chat?.llmLabel))
      await untilSignalled(service, logger)
    } finally {
      await chat?.mock?.close()
    }
  }
}

/** Human lines on stderr: stdout carries the log stream, which log shippers parse. */
function banner(service: Service, mutationsEnabled: boolean, chatLlm?: string): string {
  const { url } = service
  const mutations = mutationsEnabled ? 'enabled (Bearer token)' : 'disabled: no admin token (WARDEN_ADMIN_TOKEN)'
  return [
    `warden serve: listening on ${url}${service.http.host === '0.0.0.0' || service.http.host === '::' ? ' (all interfaces)' : ''}`,
    `  metrics   ${url}/metrics`,
    `  health    ${url}/healthz  ${url}/readyz`,
    `  api       ${url}/api/sessions  ${url}/api/sessions/stats  ${url}/api/checks  ${url}/api/pool`,
    `  mutations POST ${url}/api/sweeps  POST ${url}/api/sessions/close: ${mutations}`,
    ...(chatLlm ? [`  chat      ${url}/chat/sessions (LLM: ${chatLlm})`] : []),
    '',
  ].join('\n')
}

/**
 * Resolves once the service has shut down after SIGTERM/SIGINT. A second signal, or a shutdown
 * that outlives HARD_EXIT_MS, exits at once with code 1.
 */
function untilSignalled(service: Service, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    let received = 0
    const onSignal = (signal: NodeJS.Signals) => {
      received += 1
      if (received > 1) {
        logger.warn({ signal }, 'second signal: exiting without waiting')
        process.exit(1)
      }
      logger.info({ signal, drainMs: DRAIN_MS }, 'shutting down: no new connections, finishing requests in flight')
      setTimeout(() => {
        logger.error({ afterMs: HARD_EXIT_MS }, 'shutdown did not finish in time; exiting')
        process.exit(1)
      }, HARD_EXIT_MS).unref()
      void service.close(DRAIN_MS).then(({ forced }) => {
        process.off('SIGTERM', onSignal)
        process.off('SIGINT', onSignal)
        if (forced) logger.warn({ drainMs: DRAIN_MS }, 'cut connections whose requests outlived the drain time')
        logger.info('stopped')
        process.exitCode = 0
        resolve()
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}
