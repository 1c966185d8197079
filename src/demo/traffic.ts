import { setMaxListeners } from 'node:events'
import { randomUUID } from 'node:crypto'
import { request } from 'node:http'
import pg from 'pg'
import { run } from '../db/database.js'
import { closeDemoSession, openDemoSession, touchDemoSession } from './queries.js'
import { DEMO_GROUPS, prng } from './seed.js'

/** application_name of the traffic generator's own writes to conversation_sessions. */
export const TRAFFIC_APP_NAME = 'demo-traffic'

export interface TrafficOptions {
  /** the chat path's base URL, e.g. http://127.0.0.1:9477/chat */
  chatUrl: string
  databaseUrl: string
  /** concurrent virtual users */
  users?: number
  /** share of sessions whose client goes away without closing its conversation_sessions row */
  leakRate?: number
  /** share of turns that stream (SSE) */
  streamRate?: number
  /** think time between turns, ms */
  thinkMs?: [number, number]
  seed?: number
}

export interface TrafficStats {
  sessions: number
  turns: number
  streamed: number
  closed: number
  /** sessions whose client vanished: their rows stay active and silent, future orphans */
  leaked: number
  errors: number
  lastError: string | null
}

export interface Traffic {
  stats: () => TrafficStats
  stop: () => Promise<void>
}

const PROMPTS = [
  'where is my invoice?',
  'reset my password',
  'why did the build fail?',
  'summarise this ticket',
  'refund order 1234',
  'explain this stack trace',
]

/**
 * Virtual users of a websocket-style chat app: each creates a chat session through the chat path
 * (HTTP), mirrors it in conversation_sessions as the post-mortem's backend did, sends a few turns
 * (some streamed) with short think times, then either ends it properly or "disconnects": the
 * client vanishes and nothing clears is_active, so the row goes silent and becomes an orphan once
 * orphanAfter passes. The scheduled sweep of `warden serve` then has real work to do.
 */
export function startTraffic(options: TrafficOptions): Traffic {
  const users = options.users ?? 4
  const leakRate = options.leakRate ?? 0.3
  const streamRate = options.streamRate ?? 0.3
  const [thinkLow, thinkHigh] = options.thinkMs ?? [300, 1500]
  const random = prng(options.seed ?? Date.now() % 2 ** 31)
  const db = new pg.Pool({ connectionString: options.databaseUrl, max: 2, application_name: TRAFFIC_APP_NAME, idleTimeoutMillis: 10_000 })
  db.on('error', () => undefined)
  const stopping = new AbortController()
  // every request in flight listens to it
  setMaxListeners(0, stopping.signal)
  const stats: TrafficStats = { sessions: 0, turns: 0, streamed: 0, closed: 0, leaked: 0, errors: 0, lastError: null }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const onAbort = () => (clearTimeout(timer), resolve())
      const timer = setTimeout(() => (stopping.signal.removeEventListener('abort', onAbort), resolve()), ms)
      stopping.signal.addEventListener('abort', onAbort, { once: true })
    })
  const between = (low: number, high: number) => low + (high - low) * random()

  /**
   * One request per connection (no keep-alive): a stopping demo then leaves no idle socket for
   * the service to wait on, and an aborted request closes its own socket.
   */
  function post(path: string, body: unknown): Promise<string> {
    const payload = JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const req = request(
        `${options.chatUrl}${path}`,
        {
          method: 'POST',
          agent: false,
          signal: stopping.signal,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (text += chunk))
          res.on('end', () =>
            (res.statusCode ?? 0) < 300 ? resolve(text) : reject(new Error(`POST ${path}: ${res.statusCode} ${text.slice(0, 200)}`)),
          )
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end(payload)
    })
  }

  async function oneSession(): Promise<void> {
    const id = randomUUID()
    const group = DEMO_GROUPS[Math.floor(random() * DEMO_GROUPS.length)]!.name
    const user = `user-${String(1 + Math.floor(random() * 200)).padStart(5, '0')}`
    await post('/sessions', { id, agentRole: group, owner: user })
    await run(db, openDemoSession(id, user, group))
    stats.sessions += 1
    const turns = 1 + Math.floor(random() * 4)
    const leaks = random() < leakRate
    for (let turn = 0; turn < turns && !stopping.signal.aborted; turn++) {
      const message = PROMPTS[Math.floor(random() * PROMPTS.length)]!
      const stream = random() < streamRate
      // The whole reply (or the whole SSE stream) is read before the next turn.
      await post(`/sessions/${id}/messages${stream ? '/stream' : ''}`, { message })
      await run(db, touchDemoSession(id))
      stats.turns += 1
      if (stream) stats.streamed += 1
      await sleep(between(thinkLow, thinkHigh))
    }
    if (stopping.signal.aborted) return
    if (leaks) {
      // The post-mortem's bug: the socket closed, disconnect() never ran, the row stays active.
      stats.leaked += 1
      return
    }
    await post(`/sessions/${id}/end`, {})
    await run(db, closeDemoSession(id))
    stats.closed += 1
  }

  const loops = Array.from({ length: users }, async (_, i) => {
    await sleep(i * 250)
    while (!stopping.signal.aborted) {
      try {
        await oneSession()
      } catch (error) {
        if (stopping.signal.aborted) break
        stats.errors += 1
        stats.lastError = error instanceof Error ? error.message : String(error)
        await sleep(1000)
      }
      await sleep(between(thinkLow, thinkHigh))
    }
  })

  let stopped: Promise<void> | undefined
  return {
    stats: () => ({ ...stats }),
    stop() {
      stopped ??= (async () => {
        stopping.abort()
        await Promise.all(loops)
        await db.end().catch(() => undefined)
      })()
      return stopped
    },
  }
}
