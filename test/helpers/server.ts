import { Writable } from 'node:stream'
import { loadConfig, type WardenConfig } from '../../src/core/config.js'
import type { CollectorFactory } from '../../src/metrics/collector.js'
import { createLogger } from '../../src/server/logger.js'
import { startService, type Service } from '../../src/server/service.js'
import { writeConfig } from './cli.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

/**
 * Config for a test service: the conversation_sessions mapping (the default), port 0, fast
 * collection. `extra` is YAML merged on top (e.g. "server:\n  mutationsPerMinute: 3").
 */
export function serviceConfig(
  url: string,
  options: { token?: string | null; server?: Record<string, string | number>; extra?: string } = {},
): WardenConfig {
  const server = { port: 0, collectInterval: '1s', collectTimeout: '2s', mutationsPerMinute: 1000, ...options.server }
  const token = options.token === null ? '' : `  adminToken: ${options.token ?? ADMIN_TOKEN}\n`
  const yaml = `database:\n  url: ${url}\nserver:\n${Object.entries(server)
    .map(([key, value]) => `  ${key}: ${value}\n`)
    .join('')}${token}${options.extra ?? ''}`
  return loadConfig({ configPath: writeConfig(yaml), env: {} }).config
}

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The text exposition format, enough for assertions (no escapes inside label values beyond \\" and \\\\). */
export function parseMetrics(text: string): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ')
      types.set(name!, type!)
    } else if (line.startsWith('# HELP ')) {
      const rest = line.slice(7)
      help.set(rest.slice(0, rest.indexOf(' ')), rest.slice(rest.indexOf(' ') + 1))
    } else if (line && !line.startsWith('#')) {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (!match) throw new Error(`unparsable metrics line: ${line}`)
      const labels: Record<string, string> = {}
      for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, '$1')
      samples.push({ name: match[1]!, labels, value: Number(match[3]) })
    }
  }
  return { samples, types, help }
}

/** The value of the one sample with this name whose labels include `labels`; undefined when none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return found[0]?.value
}

/** { labelValue: value } of a metric over one label. */
export function byLabel(samples: Sample[], name: string, label: string): Record<string, number> {
  return Object.fromEntries(samples.filter((s) => s.name === name).map((s) => [s.labels[label]!, s.value]))
}

export interface TestService {
  url: string
  service: Service
  /** every log entry, parsed */
  logs: Array<Record<string, unknown>>
  get: (path: string, headers?: Record<string, string>) => Promise<Response>
  /** JSON POST; token: the admin token unless null (no header) or another string */
  post: (path: string, body?: unknown, token?: string | null) => Promise<Response>
  scrape: () => Promise<ReturnType<typeof parseMetrics> & { text: string }>
  close: () => Promise<void>
}

/** The real service (both pools, collection, HTTP on a free loopback port) with a capturing logger. */
export async function startTestService(
  config: WardenConfig,
  options: { collectors?: CollectorFactory[]; now?: () => number } = {},
): Promise<TestService> {
  const logs: Array<Record<string, unknown>> = []
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  const logger = createLogger({ level: 'debug', format: 'json', destination })
  const service = await startService({ config, logger, collectors: options.collectors, now: options.now })
  const url = service.url
  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${url}${path}`, { headers })
  return {
    url,
    service,
    logs,
    get,
    post: (path, body, token) =>
      fetch(`${url}${path}`, {
        method: 'POST',
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(token === null ? {} : { authorization: `Bearer ${token ?? ADMIN_TOKEN}` }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    async scrape() {
      const response = await get('/metrics')
      if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`)
      const text = await response.text()
      return { ...parseMetrics(text), text }
    },
    async close() {
      await service.close(5_000)
    },
  }
}
