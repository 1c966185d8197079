import { setTimeout as sleep } from 'node:timers/promises'
import { ChatClient, errorKind, type ChatReply } from './http-client.js'
import { percentile } from './stats.js'

/**
 * Closed-loop virtual users against one chat path: each creates a session, sends `turns`
 * messages one after another (no think time, so at most one LLM call per user is in flight)
 * and ends the session, then starts the next. Little's law then caps throughput at
 * concurrency / call latency, which is what the report compares against.
 */

export interface DriveOptions {
  chatUrl: string
  concurrency: number
  turns: number
  stream: boolean
  /** session ids start with this: cost rows of the run are counted by it afterwards */
  idPrefix: string
  /** measured window after the ramp-up; omitted with `requests` */
  durationMs?: number
  /** total turns to send instead of a window */
  requests?: number
  /** users start spread over this span, so their turns do not complete in lockstep */
  rampUpMs: number
  /** users stop starting turns after the window; those in flight get this long to finish */
  drainMs: number
  requestTimeoutMs: number
  signal?: AbortSignal
  onTick?: (snapshot: DriveSnapshot) => void
}

export interface DriveSnapshot {
  elapsedMs: number
  successes: number
  errors: number
  inFlight: number
}

export interface DriveResult {
  /** successful turns per second inside the measured window */
  throughput: number
  /** all successful turns, the window's and the ramp-up's and drain's */
  successes: number
  turnsInWindow: number
  windowMs: number
  latencyMs: { p50: number | null; p95: number | null; p99: number | null }
  errors: Record<string, number>
  sessions: number
  interrupted: boolean
}

/** Replies that end a session's run of turns: the user starts a new session. */
const SESSION_OVER = new Set(['session_not_found', 'session_ended', 'turn_conflict'])
const ERROR_BACKOFF_MS = 50

export async function drive(o: DriveOptions): Promise<DriveResult> {
  const client = new ChatClient(o.chatUrl, { maxSockets: o.concurrency, timeoutMs: o.requestTimeoutMs })
  const started = performance.now()
  const windowStart = o.requests === undefined ? started + o.rampUpMs : started
  const windowEnd = o.requests === undefined ? windowStart + (o.durationMs ?? 0) : Number.POSITIVE_INFINITY
  const latencies: number[] = []
  const errors: Record<string, number> = {}
  let successes = 0
  let turnsInWindow = 0
  let failures = 0
  let inFlight = 0
  let issued = 0
  let sessions = 0
  let hardStop = false

  const stopIssuing = () =>
    hardStop || o.signal?.aborted === true || performance.now() >= windowEnd || (o.requests !== undefined && issued >= o.requests)
  const fail = (kind: string) => {
    errors[kind] = (errors[kind] ?? 0) + 1
    failures += 1
  }

  /** One request; resolves to the reply, or to undefined after counting a network failure. */
  async function send(method: string, path: string, body?: unknown, stream = false): Promise<ChatReply | undefined> {
    inFlight += 1
    try {
      return await client.request(method, path, body, stream)
    } catch (error) {
      fail(errorKind(undefined, error))
      return undefined
    } finally {
      inFlight -= 1
    }
  }

  async function user(index: number): Promise<void> {
    await sleep((o.rampUpMs * index) / o.concurrency)
    for (let n = 0; !stopIssuing(); n += 1) {
      const id = `${o.idPrefix}${index}-${n}`
      const created = await send('POST', 'sessions', { id, agentRole: 'loadtest' })
      if (!created?.ok) {
        if (created) fail(errorKind(created))
        await sleep(ERROR_BACKOFF_MS)
        continue
      }
      sessions += 1
      for (let turn = 0; turn < o.turns && !stopIssuing(); turn += 1) {
        issued += 1
        const t0 = performance.now()
        const reply = await send(
          'POST',
          `sessions/${encodeURIComponent(id)}/messages${o.stream ? '/stream' : ''}`,
          { message: `load test turn ${turn + 1}: how are you today?` },
          o.stream,
        )
        const t1 = performance.now()
        if (reply?.ok) {
          successes += 1
          latencies.push(t1 - t0)
          if (t1 >= windowStart && t1 <= windowEnd) turnsInWindow += 1
          continue
        }
        if (!reply) {
          await sleep(ERROR_BACKOFF_MS)
          continue
        }
        const kind = errorKind(reply)
        fail(kind)
        if (SESSION_OVER.has(kind)) break
        await sleep(ERROR_BACKOFF_MS)
      }
      const ended = await send('POST', `sessions/${encodeURIComponent(id)}/end`)
      if (ended && !ended.ok) fail(errorKind(ended))
    }
  }

  const ticker = o.onTick
    ? setInterval(() => o.onTick!({ elapsedMs: performance.now() - started, successes, errors: failures, inFlight }), 1000)
    : undefined
  const users = Promise.all(Array.from({ length: o.concurrency }, (_, i) => user(i)))
  // Bounded: whatever is still running after the window and the drain is cut off.
  const budget = o.requests === undefined ? o.rampUpMs + (o.durationMs ?? 0) + o.drainMs : Number.POSITIVE_INFINITY
  let timer: NodeJS.Timeout | undefined
  const cutOff = Number.isFinite(budget)
    ? new Promise<void>((resolve) => (timer = setTimeout(resolve, budget)))
    : new Promise<void>(() => undefined)
  await Promise.race([users, cutOff])
  clearTimeout(timer)
  hardStop = true
  client.close()
  await users
  if (ticker) clearInterval(ticker)

  const elapsedWindow = o.requests === undefined ? (o.durationMs ?? 0) : performance.now() - started
  const sorted = latencies.sort((a, b) => a - b)
  const round = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10)
  return {
    throughput: elapsedWindow > 0 ? ((o.requests === undefined ? turnsInWindow : successes) * 1000) / elapsedWindow : 0,
    successes,
    turnsInWindow: o.requests === undefined ? turnsInWindow : successes,
    windowMs: Math.round(elapsedWindow),
    latencyMs: { p50: round(percentile(sorted, 50)), p95: round(percentile(sorted, 95)), p99: round(percentile(sorted, 99)) },
    errors,
    sessions,
    interrupted: o.signal?.aborted === true,
  }
}
