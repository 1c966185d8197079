import http from 'node:http'
import type pg from 'pg'
import { afterAll, afterEach, beforeAll, expect } from 'vitest'
import type { ChatLogger } from '../../src/chat/router.js'
import { startChatServer, type ChatServer, type ChatServerOptions } from '../../src/chat/server.js'
import { migrate } from '../../src/db/migrate.js'
import { startMockLlm, MOCK_CALLS_PATH, type MockLlmCall, type MockLlmOptions, type MockLlmServer } from '../../src/llm/mock-server.js'
import { ChatClient, parseSse, type ChatReply } from '../../src/loadtest/http-client.js'
import { createTestDatabase, type TestDatabase } from './db.js'
import { parseMetrics, valueOf, type Sample } from './server.js'
import { waitFor } from './wait.js'

/**
 * The reference chat path under test: a real chat server (express, instrumented pool, the real
 * @anthropic-ai/sdk) on a random port against the mock LLM over HTTP, and a real PostgreSQL.
 * Every test file of the chat path uses this harness; `useChatHarness` wires the hooks, and after
 * every test it asserts the billing invariant for every server the test started.
 */

export const MODEL = 'claude-mock-1'

export interface LogEntry {
  level: 'info' | 'warn' | 'error'
  msg: string
  [key: string]: unknown
}

export interface Harness {
  server: ChatServer
  mock: MockLlmServer
  api: ChatClient
  /** everything the chat server logged, in order */
  logs: LogEntry[]
  /** the database the server writes to (plain SQL for assertions) */
  exec: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  /** the chat server's /metrics over HTTP (its registry once it is closed) */
  scrape(): Promise<Sample[]>
  /** closes the chat server (its sessions stay open unless closeSessions) */
  close(options?: { graceMs?: number; closeSessions?: boolean }): Promise<{ closedSessions: number }>
  closed: boolean
}

export interface StartOptions {
  mock?: MockLlmOptions
  server?: Partial<ChatServerOptions>
  /** point the SDK somewhere other than the mock (e.g. a closed port) */
  llmUrl?: string
  apiKey?: string
  maxRetries?: number
  /** a database other than the file's (e.g. an embedded PostgreSQL the test restarts) */
  database?: { url: string; exec: Harness['exec'] }
}

export interface ChatHarness {
  db(): TestDatabase
  start(options?: StartOptions): Promise<Harness>
}

function capturingLogger(logs: LogEntry[]): ChatLogger {
  const at =
    (level: LogEntry['level']) =>
    (details: object, msg: string): void => {
      logs.push({ ...(details as Record<string, unknown>), level, msg })
    }
  return { info: at('info'), warn: at('warn'), error: at('error') }
}

/** One database per test file (migrated), one chat server + mock per start(), all torn down after each test. */
export function useChatHarness(label: string): ChatHarness {
  let t: TestDatabase | undefined
  const running: Harness[] = []
  beforeAll(async () => {
    t = await createTestDatabase(label)
    await migrate(t.db, 'warden')
  })
  afterAll(async () => {
    await t?.drop()
  })
  afterEach(async () => {
    const harnesses = running.splice(0)
    try {
      // The invariant of issue 10: whatever the test did, every call the provider billed has its one cost row.
      for (const h of harnesses) await expectBilledCallsRecorded(h)
    } finally {
      for (const h of harnesses) {
        h.api.close()
        await h.close({ graceMs: 0 })
        await h.mock.close()
      }
    }
  })
  const db = () => {
    if (!t) throw new Error('useChatHarness: the database is created in beforeAll')
    return t
  }
  return {
    db,
    async start(opts = {}) {
      const database = opts.database ?? { url: db().url, exec: db().exec }
      const mock = await startMockLlm(opts.mock ?? {})
      const logs: LogEntry[] = []
      const server = await startChatServer({
        databaseUrl: database.url,
        llm: { baseURL: opts.llmUrl ?? mock.url, apiKey: opts.apiKey ?? 'test-key', maxRetries: opts.maxRetries ?? 0 },
        model: MODEL,
        poolMax: 6,
        logger: capturingLogger(logs),
        ...opts.server,
      })
      let closing: Promise<{ closedSessions: number }> | undefined
      const h: Harness = {
        server,
        mock,
        logs,
        exec: database.exec,
        api: new ChatClient(server.chatUrl, { maxSockets: 16, timeoutMs: 30_000 }),
        closed: false,
        async scrape() {
          if (h.closed) return parseMetrics(await server.registry.metrics()).samples
          const response = await fetch(`${server.url}/metrics`)
          if (response.status !== 200) throw new Error(`GET /metrics of the chat server answered ${response.status}`)
          return parseMetrics(await response.text()).samples
        },
        close(options) {
          h.closed = true
          closing ??= server.close(options)
          return closing
        },
      }
      running.push(h)
      return h
    },
  }
}

export const uniqueId = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`

export async function createSession(h: Harness, body: Record<string, unknown> = {}): Promise<string> {
  const reply = await h.api.request('POST', 'sessions', body)
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return reply.body.session.id as string
}

export const say = (h: Harness, id: string, message: string) =>
  h.api.request('POST', `sessions/${encodeURIComponent(id)}/messages`, { message })

export const sayStreaming = (h: Harness, id: string, message: string) =>
  h.api.request('POST', `sessions/${encodeURIComponent(id)}/messages/stream`, { message }, true)

export function expectError(reply: ChatReply, status: number, code: string): void {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status)
  expect(reply.body).toEqual({ error: { code, message: expect.any(String) } })
}

export async function rows(h: Pick<Harness, 'exec'>, text: string, values: unknown[] = []) {
  return (await h.exec(text, values)).rows
}

/** Sum of every sample of a metric whose labels include `labels` (0 when there is none). */
export async function metricSum(h: Harness, name: string, labels: Record<string, string> = {}): Promise<number> {
  return (await h.scrape())
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0)
}

export const metricValue = async (h: Harness, name: string, labels: Record<string, string> = {}) => valueOf(await h.scrape(), name, labels)

export const heldDuringLlm = (h: Harness) => metricSum(h, 'warden_db_connection_held_during_llm_call_total')

/** The mock's own log of what it answered, over HTTP (what the provider would bill). */
export async function mockCalls(h: Harness): Promise<MockLlmCall[]> {
  const response = await fetch(`${h.mock.url}${MOCK_CALLS_PATH}`)
  const { calls, dropped } = (await response.json()) as { calls: MockLlmCall[]; dropped: number }
  if (dropped > 0) throw new Error(`the mock dropped ${dropped} calls from its log`)
  return calls
}

/**
 * Posts a streaming turn, reads until `deltas` delta events arrived, then drops the connection
 * (a browser tab closed mid-reply). Returns the text the client received.
 */
export function streamThenDisconnect(h: Harness, id: string, message: string, deltas = 1): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = http.request(
      `${h.server.chatUrl}/sessions/${encodeURIComponent(id)}/messages/stream`,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        let buffer = ''
        let text = ''
        let seen = 0
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buffer += chunk
          const parsed = parseSse(buffer)
          buffer = parsed.rest
          for (const event of parsed.events.filter((e) => e.event === 'delta')) {
            text += (event.data as { text: string }).text
            seen += 1
          }
          if (seen >= deltas) {
            req.destroy()
            resolve(text)
          }
        })
      },
    )
    req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(error)))
    req.end(JSON.stringify({ message }))
  })
}

interface CostRowOfCall {
  request_id: string
  n: number
}

/** The lost-cost events a server logged (each names the provider request id of the billed call). */
export const lostCostEvents = (h: Harness) => h.logs.filter((entry) => entry.event === 'llm_cost_lost')

/**
 * The billing invariant: every call the mock billed (its own log, over HTTP) has exactly one
 * llm_requests row carrying its request id, or exactly one loud lost-cost event (a log line
 * with that request id, counted in warden_llm_cost_rows_lost_total); never two rows, and no
 * unbilled call claims tokens. Polls, because a cancelled stream's row is written after its
 * client has gone.
 */
export async function expectBilledCallsRecorded(h: Harness, deadlineMs = 10_000): Promise<void> {
  let report = ''
  const holds = async (): Promise<boolean> => {
    const calls = await mockCalls(h)
    const ids = calls.map((c) => c.requestId)
    const found = await h.exec(
      `SELECT request_id, count(*)::int AS n FROM warden.llm_requests WHERE request_id = ANY($1) GROUP BY request_id`,
      [ids],
    )
    const rowsById = new Map((found.rows as CostRowOfCall[]).map((r) => [r.request_id, r.n]))
    const tokensOfUnbilled = await h.exec(
      `SELECT count(*)::int AS n FROM warden.llm_requests WHERE request_id = ANY($1) AND input_tokens + output_tokens > 0`,
      [calls.filter((c) => !c.billed).map((c) => c.requestId)],
    )
    const lost = lostCostEvents(h).map((entry) => entry.requestId)
    const lostCounted = await metricSum(h, 'warden_llm_cost_rows_lost_total')
    const problems: string[] = []
    for (const call of calls.filter((c) => c.billed)) {
      const recorded = (rowsById.get(call.requestId) ?? 0) + lost.filter((id) => id === call.requestId).length
      if (recorded !== 1)
        problems.push(
          `${call.requestId}: ${rowsById.get(call.requestId) ?? 0} rows, ${recorded - (rowsById.get(call.requestId) ?? 0)} lost events`,
        )
    }
    for (const call of calls.filter((c) => !c.billed))
      if ((rowsById.get(call.requestId) ?? 0) > 1) problems.push(`${call.requestId} (unbilled): ${rowsById.get(call.requestId)} rows`)
    if ((tokensOfUnbilled.rows[0] as { n: number }).n > 0)
      problems.push(`${(tokensOfUnbilled.rows[0] as { n: number }).n} unbilled calls claim tokens`)
    if (lostCounted !== lost.length) problems.push(`warden_llm_cost_rows_lost_total ${lostCounted}, lost-cost log lines ${lost.length}`)
    report = `${calls.filter((c) => c.billed).length} billed calls: ${problems.join('; ')}`
    return problems.length === 0
  }
  try {
    await waitFor(async () => (await holds()) || undefined, 'every billed call to have one cost row', deadlineMs, 50)
  } catch {
    expect.fail(`llm_requests rows do not match billed calls: ${report}`)
  }
}
