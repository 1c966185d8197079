import { redactText, redactUrl } from '../core/urls.js'

/** One sample of an instant vector: its labels and its value (NaN and ±Inf kept as numbers). */
export interface PromSample {
  metric: Record<string, string>
  value: number
}

export interface PromClientOptions {
  url: string
  /** sent with every request (Authorization, X-Scope-OrgID); never part of an error message */
  headers?: Record<string, string>
  /** deadline of one query */
  timeoutMs?: number
}

/** A query that could not be answered: names the (redacted) Prometheus and the query. */
export class PromQueryError extends Error {
  constructor(
    message: string,
    readonly query: string,
  ) {
    super(message)
    this.name = 'PromQueryError'
  }
}

/**
 * The one thing the app-* checks need from Prometheus: instant queries through
 * GET /api/v1/query, each with a deadline. Vectors and scalars only; the evidence of a finding is
 * the query text plus the samples it returned.
 */
export class PromClient {
  readonly shownUrl: string
  private readonly base: string
  private readonly headers: Record<string, string>
  private readonly timeoutMs: number

  constructor(options: PromClientOptions) {
    const url = new URL(options.url)
    // fetch refuses URLs with credentials: user:password@ becomes Basic auth, as curl and Grafana do
    const basic: Record<string, string> =
      url.username || url.password
        ? {
            authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`,
          }
        : {}
    this.shownUrl = redactUrl(options.url).replace(/\/+$/, '')
    url.username = ''
    url.password = ''
    this.base = url.toString().replace(/\/+$/, '')
    this.headers = { accept: 'application/json', ...basic, ...(options.headers ?? {}) }
    this.timeoutMs = options.timeoutMs ?? 10_000
  }

  async query(expr: string): Promise<PromSample[]> {
    const endpoint = `${this.base}/api/v1/query`
    const seconds = Math.max(1, Math.floor(this.timeoutMs / 1000))
    const body = new URLSearchParams({ query: expr, timeout: `${seconds}s` })
    let response: Response
    try {
      // POST keeps long queries out of URL length limits and out of access logs
      response = await fetch(endpoint, {
        method: 'POST',
        headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded' },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      })
    } catch (error) {
      const cause = error as Error & { cause?: { code?: string; message?: string } }
      const why =
        cause.name === 'TimeoutError'
          ? `no answer within ${this.timeoutMs} ms`
          : (cause.cause?.code ?? cause.cause?.message ?? cause.message)
      throw new PromQueryError(`Prometheus ${this.shownUrl} unreachable (${redactText(String(why))}) for query ${expr}`, expr)
    }
    const text = await response.text().catch(() => '')
    let parsed: { status?: string; error?: string; errorType?: string; data?: { resultType?: string; result?: unknown } } | undefined
    try {
      parsed = JSON.parse(text) as typeof parsed
    } catch {
      parsed = undefined
    }
    if (!response.ok || parsed?.status !== 'success') {
      const detail = parsed?.error ? `${parsed.errorType ?? 'error'}: ${parsed.error}` : `HTTP ${response.status} ${text.slice(0, 200)}`
      throw new PromQueryError(`Prometheus ${this.shownUrl} refused query ${expr}: ${detail.trim()}`, expr)
    }
    const data = parsed.data ?? {}
    if (data.resultType === 'scalar') {
      const [, value] = data.result as [number, string]
      return [{ metric: {}, value: Number(value) }]
    }
    if (data.resultType !== 'vector')
      throw new PromQueryError(`Prometheus ${this.shownUrl}: query ${expr} returned a ${data.resultType}, not a vector`, expr)
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((sample) => ({
      metric: sample.metric,
      value: Number(sample.value[1]),
    }))
  }
}
