import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { chatSetup, type ChatSetup } from '../cli/chat-flags.js'
import { loadConfig, type FlagValue, type LoadedConfig } from '../core/config.js'
import { startMockLlm, type MockLlmServer } from '../llm/mock-server.js'
import { createRegistry } from '../metrics/registry.js'
import { createLogger, type Logger } from '../server/logger.js'
import { startService, type Service } from '../server/service.js'
import { HOLD_APP_NAME, startHoldApp, type HoldApp } from './hold-app.js'
import { createJobsTarget } from './jobs.js'
import { demoConfig } from './run-demo.js'
import { startTraffic, type Traffic, type TrafficStats } from './traffic.js'

/** Fast enough that every part of the product moves within a minute or two of `warden demo`. */
export const STACK_SETTINGS = {
  orphanAfter: '2m',
  /** node-cron with seconds: every 30 s */
  sweep: '*/30 * * * * *',
  collectInterval: '5s',
  chatLatency: '400ms',
  /** how long the hold app sits idle in transaction per call */
  holdMs: 20_000,
  users: 4,
}

export interface StackOptions {
  databaseUrl: string
  /** where the demo writes its fleet config (a file the printed commands use) */
  configPath: string
  /** the service's port (0: a free one) */
  port: number
  /** the service's log lines go here (stderr by default), warnings and up */
  logDestination?: NodeJS.WritableStream
  logLevel?: string
}

export interface DemoStack {
  url: string
  chatUrl: string
  adminToken: string
  config: LoadedConfig
  service: Service
  traffic: Traffic
  holdApp: HoldApp
  /** stops traffic, hold app, service, mock LLMs; the caller stops PostgreSQL */
  stop: () => Promise<StackSummary>
}

export interface StackSummary {
  traffic: TrafficStats
  holdApp: { holds: number; errors: number }
  llmCalls: number
}

/** The seeding config: the single-table mapping of the example, with the stack's orphanAfter. */
export function stackConfig(databaseUrl: string, port: number, adminToken: string): LoadedConfig {
  const flag = (key: string, value: unknown): FlagValue => ({ key, flag: '(demo)', value })
  return demoConfig(databaseUrl, [
    flag('sessions.orphanAfter', STACK_SETTINGS.orphanAfter),
    flag('server.port', port),
    flag('server.adminToken', adminToken),
  ])
}

/**
 * The demo's fleet: the chat database with two tables (the app's conversation_sessions and the
 * reference chat path's own), and the jobs database with agent_runs. Written to a file, so the
 * commands the demo prints can point at it with --config.
 */
export function fleetConfigYaml(databaseUrl: string, jobsUrl: string, port: number, schema: string): string {
  const o = STACK_SETTINGS.orphanAfter
  return [
    '# warden demo: two targets, three session tables (written by the demo for this run)',
    'database: { applicationName: warden-demo }',
    `server: { host: 127.0.0.1, port: ${port}, collectInterval: ${STACK_SETTINGS.collectInterval}, collectTimeout: 4s }`,
    `scheduler: { sweep: "${STACK_SETTINGS.sweep}", sweepApply: true }`,
    'targets:',
    '  - name: chat',
    `    databaseUrl: ${databaseUrl}`,
    '    sessions:',
    '      - name: conversations',
    '        table: public.conversation_sessions',
    '        columns: { id: session_id, active: is_active, startedAt: session_start, lastSeenAt: last_activity_at, endedAt: [session_end, ended_at], durationSeconds: duration_seconds, group: agent_role }',
    `        orphanAfter: ${o}`,
    '      - name: chat-path',
    `        table: ${schema}.chat_sessions`,
    '        columns: { id: id, active: is_active, startedAt: started_at, lastSeenAt: last_activity_at, endedAt: [ended_at], durationSeconds: duration_seconds, group: agent_role, owner: owner }',
    `        orphanAfter: ${o}`,
    '  - name: jobs',
    `    databaseUrl: ${jobsUrl}`,
    '    sessions:',
    '      - name: runs',
    '        table: public.agent_runs',
    '        columns: { id: run_id, startedAt: started_at, lastSeenAt: heartbeat_at, endedAt: [finished_at], group: agent }',
    `        orphanAfter: ${o}`,
    '',
  ].join('\n')
}

/**
 * Everything `warden serve --chat` runs, on the demo database, with something to look at: the
 * service (metrics, API, scheduler, chat path on a mock LLM), virtual users chatting through it
 * (some leaking their session rows), and an app that holds a transaction across slow LLM calls.
 */
export async function startDemoStack(options: StackOptions): Promise<DemoStack> {
  const adminToken = randomBytes(24).toString('hex')
  const jobsUrl = await createJobsTarget(options.databaseUrl, 'warden')
  writeFileSync(options.configPath, fleetConfigYaml(options.databaseUrl, jobsUrl, options.port, 'warden'))
  const loaded = loadConfig({
    configPath: options.configPath,
    env: {},
    flags: [{ key: 'server.adminToken', flag: '(demo)', value: adminToken }],
  })
  const { config } = loaded
  const logger: Logger = createLogger({
    level: options.logLevel ?? 'warn',
    format: 'pretty',
    destination: { write: (line: string) => void (options.logDestination ?? process.stderr).write(line) },
    isTTY: process.stderr.isTTY === true,
    secrets: [adminToken],
  })
  const registry = createRegistry()
  const started: Array<() => Promise<unknown>> = []
  const stopStarted = async () => {
    for (const stop of started.reverse()) await stop().catch(() => undefined)
  }
  try {
    const chat: ChatSetup = await chatSetup(
      {
        pattern: 'release',
        model: 'claude-mock-1',
        'mock-latency': STACK_SETTINGS.chatLatency,
        'pool-max': 5,
        'pool-timeout': '5s',
        'llm-timeout': '30s',
        'max-retries': 1,
        grace: '2s',
        'keep-sessions': false,
        'api-key': 'mock-key',
      },
      { schema: config.wardenSchema, applicationName: 'warden-demo', logger },
    )
    const chatMock = chat.mock as MockLlmServer
    started.push(() => chatMock.close())
    const slowMock = await startMockLlm({ latencyMs: STACK_SETTINGS.holdMs })
    started.push(() => slowMock.close())

    const service = await startService({ config, logger, registry, scheduler: true, chat: chat.options })
    started.push(() => service.close(3_000))
    const chatUrl = `${service.url}/chat`
    const holdApp = startHoldApp({
      databaseUrl: options.databaseUrl,
      llmUrl: slowMock.url,
      registry,
      holdMs: STACK_SETTINGS.holdMs,
      logger: { warn: (details, message) => logger.warn(details, message) },
    })
    started.push(() => holdApp.stop())
    const traffic = startTraffic({ chatUrl, databaseUrl: options.databaseUrl, users: STACK_SETTINGS.users })
    started.push(() => traffic.stop())

    let stopping: Promise<StackSummary> | undefined
    return {
      url: service.url,
      chatUrl,
      adminToken,
      config: loaded,
      service,
      traffic,
      holdApp,
      stop() {
        stopping ??= (async () => {
          // Clients first, then the service they talk to, then the LLMs it calls.
          await Promise.all([traffic.stop(), holdApp.stop()])
          await service.close(3_000)
          const llmCalls = chatMock.stats().requests + slowMock.stats().requests
          await Promise.all([chatMock.close(), slowMock.close()])
          return { traffic: traffic.stats(), holdApp: holdApp.stats(), llmCalls }
        })()
        return stopping
      },
    }
  } catch (error) {
    await stopStarted()
    throw error
  }
}

export { HOLD_APP_NAME }
