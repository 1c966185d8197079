import http from 'node:http'

/**
 * The load test's HTTP client for the chat path: node:http with one keep-alive agent sized
 * for the virtual users, so every user keeps its socket and the run measures the server, not
 * connection set-up. (Node's fetch would do, but costs more CPU per request on two cores.)
 */

export interface SseEvent {
  event: string
  data: unknown
}

/** Splits complete `event:`/`data:` blocks off a buffer; returns the events and the unfinished rest. */
export function parseSse(buffer: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = []
  let rest = buffer
  for (let end = rest.indexOf('\n\n'); end >= 0; end = rest.indexOf('\n\n')) {
    const block = rest.slice(0, end)
    rest = rest.slice(end + 2)
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
    }
    if (data.length === 0) continue
    const text = data.join('\n')
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON: keep the text
    }
    events.push({ event, data: parsed })
  }
  return { events, rest }
}

export interface ChatReply {
  status: number
  /** 2xx, and for a stream: it ended with `done` */
  ok: boolean
  /** JSON body; for a stream, the data of its final `done` or `error` event */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the chat path's JSON, read by field in the driver and the tests
  body: any
  /** a stream's events, deltas included */
  events?: SseEvent[]
}

export interface ChatClientOptions {
  /** sockets kept open: the number of virtual users */
  maxSockets: number
  /** per request; a reply slower than this is a client_timeout */
  timeoutMs: number
}

export class ChatClient {
  private readonly agent: http.Agent
  private readonly base: URL

  constructor(
    baseUrl: string,
    private readonly options: ChatClientOptions,
  ) {
    this.base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`)
    this.agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets, scheduling: 'lifo' })
  }

  /** One request; a network failure rejects (with code), any HTTP status resolves. */
  request(method: string, path: string, body?: unknown, stream = false): Promise<ChatReply> {
    const url = new URL(path.replace(/^\//, ''), this.base)
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const req = http.request(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            accept: stream ? 'text/event-stream' : 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          },
          timeout: this.options.timeoutMs,
        },
        (res) => {
          res.setEncoding('utf8')
          const isStream = (res.headers['content-type'] ?? '').startsWith('text/event-stream')
          let text = ''
          const events: SseEvent[] = []
          res.on('data', (chunk: string) => {
            text += chunk
            if (!isStream) return
            const parsed = parseSse(text)
            events.push(...parsed.events)
            text = parsed.rest
          })
          res.on('end', () => {
            const status = res.statusCode ?? 0
            if (isStream) {
              const last = [...events].reverse().find((e) => e.event === 'done' || e.event === 'error')
              // An error event after a 200 is still a failed turn; its data carries the code like a JSON error.
              const body = last?.data ?? { error: { code: 'stream_incomplete', message: 'the stream ended without done or error' } }
              resolve({ status, ok: status < 300 && last?.event === 'done', body, events })
              return
            }
            let json: unknown = text
            try {
              json = text ? JSON.parse(text) : undefined
            } catch {
              // keep the raw text
            }
            resolve({ status, ok: status >= 200 && status < 300, body: json })
          })
          res.on('error', reject)
        },
      )
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error(`no reply within ${this.options.timeoutMs} ms`), { code: 'CLIENT_TIMEOUT' })),
      )
      req.on('error', reject)
      req.end(payload)
    })
  }

  close(): void {
    this.agent.destroy()
  }
}

/** The error kind of a failed request, for the report: the chat path's error code, else http_<status> or the network code. */
export function errorKind(reply: ChatReply | undefined, error?: unknown): string {
  if (error !== undefined) {
    const code = (error as { code?: string }).code
    return code === 'CLIENT_TIMEOUT' ? 'client_timeout' : code ? `network_${code.toLowerCase()}` : 'network_error'
  }
  const code = (reply?.body as { error?: { code?: unknown } } | undefined)?.error?.code
  return typeof code === 'string' && /^[a-z_]{1,40}$/.test(code) ? code : `http_${reply?.status ?? 0}`
}
