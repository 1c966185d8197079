import { Flags } from '@oclif/core'
import pino from 'pino'
import { WardenCommand } from '../../cli/base-command.js'
import { hostProblem } from '../../core/urls.js'
import { ExitCode, usageError, WardenError } from '../../core/errors.js'
import { startChatServer, type ChatServer } from '../../chat/server.js'
import { migrate } from '../../db/migrate.js'
import { chatFlags, chatSetup } from '../../cli/chat-flags.js'
import { targetFlag } from '../../cli/flags.js'
import type { MockLlmServer } from '../../llm/mock-server.js'
import { untilStopSignal } from '../../core/signals.js'

export default class ChatServe extends WardenCommand {
  static override summary = `Serve the reference chat path on its own (the same router \`warden serve --chat\` mounts).`

  static override description = `Routes under /chat: POST /sessions, GET /sessions/{id}, GET /sessions/{id}/messages, POST /sessions/{id}/messages, POST /sessions/{id}/messages/stream (SSE), POST /sessions/{id}/end; plus GET /metrics and GET /healthz. Sessions, messages and one llm_requests cost row per LLM call live in Warden's schema (migrated at start). Without --llm-url an in-process mock LLM answers (see \`warden mock-llm\`).

On SIGTERM or Ctrl-C it stops accepting, lets turns in flight finish (--grace), closes the sessions it opened (end_reason 'shutdown', unless --keep-sessions) and exits 0. Logs are JSON lines (pino) on stderr; with --json, one line {url, chatUrl, serverId, pattern, llm} goes to stdout once it listens.`

  static override examples = [
    '<%= config.bin %> chat serve --database-url postgres://localhost/app --mock-latency 1s',
    'ANTHROPIC_API_KEY=sk-... <%= config.bin %> chat serve --llm-url https://api.anthropic.com --model claude-sonnet-4-5',
    '<%= config.bin %> chat serve --pattern hold --pool-max 5   # the anti-pattern, for comparison only',
  ]

  static override flags = {
    host: Flags.string({ description: 'address to listen on', default: '127.0.0.1' }),
    port: Flags.integer({ description: 'port to listen on (0: a free one, printed)', default: 9478, min: 0, max: 65_535 }),
    target: targetFlag,
    ...chatFlags,
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(ChatServe)
    const loaded = this.loadConfig(flags)
    const target = this.selectedTarget(loaded, flags)
    const databaseUrl = target.database.url
    if (!databaseUrl) throw usageError('chat serve needs a database: --database-url, WARDEN_DATABASE_URL or DATABASE_URL')
    const logger = pino({ name: 'warden-chat' }, pino.destination(2))
    const stop = untilStopSignal()
    let mock: MockLlmServer | undefined
    let server: ChatServer | undefined
    try {
      const badHost = hostProblem(flags.host)
      if (badHost) throw usageError(`--host ${JSON.stringify(flags.host)}: ${badHost}`)
      // Flags first (chatSetup refuses bad ones), then the database: bad input changes nothing.
      const setup = await chatSetup(flags, {
        schema: loaded.config.wardenSchema,
        applicationName: loaded.config.database.applicationName,
        logger,
      })
      mock = setup.mock
      await this.withTargetDatabase(target, (db) => migrate(db, loaded.config.wardenSchema))
      const { graceMs, keepSessions, ...mountOptions } = setup.options
      server = await startChatServer({ ...mountOptions, databaseUrl, target: target.name, host: flags.host, port: flags.port }).catch(
        (error: NodeJS.ErrnoException) => {
          throw new WardenError(`cannot listen on ${flags.host}:${flags.port}: ${error.code ?? error.message}`, ExitCode.unavailable)
        },
      )
      const line = {
        url: server.url,
        chatUrl: server.chatUrl,
        serverId: server.router.serverId,
        pattern: flags.pattern,
        llm: setup.llmLabel,
      }
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(line)}\n`)
      else
        this.say(
          `chat path listening on ${server.chatUrl} (pattern ${flags.pattern}, LLM ${line.llm}, server id ${line.serverId}); Ctrl-C to stop`,
        )
      const signal = await stop.signal
      logger.info({ signal }, 'shutting down')
      const { closedSessions } = await server.close({ graceMs, closeSessions: !keepSessions })
      server = undefined
      const summary = `stopped; closed ${closedSessions} open session(s) of this server`
      if (this.jsonEnabled()) process.stderr.write(`${summary}\n`)
      else this.say(summary)
    } finally {
      stop.dispose()
      await server?.close({ graceMs: 0 }).catch(() => undefined)
      await mock?.close()
      logger.flush()
    }
  }
}
