/** Reading a Prometheus text exposition, and timing GET /metrics the way Prometheus calls it. */

export interface Sample {
  labels: Record<string, string>
  value: number
}

const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g

/** Every sample of one metric name in an exposition (values parsed; +Inf is Infinity). */
export function samples(body: string, name: string): Sample[] {
  const out: Sample[] = []
  const prefix = `${name}{`
  for (const line of body.split('\n')) {
    if (!(line.startsWith(prefix) || line.startsWith(`${name} `))) continue
    const close = line.lastIndexOf('} ')
    const labelText = line.startsWith(prefix) ? line.slice(prefix.length, close) : ''
    const valueText = line.startsWith(prefix) ? line.slice(close + 2) : line.slice(name.length + 1)
    const labels: Record<string, string> = {}
    for (const match of labelText.matchAll(LABEL)) labels[match[1]!] = match[2]!
    out.push({ labels, value: valueText === '+Inf' ? Number.POSITIVE_INFINITY : Number(valueText.split(' ')[0]) })
  }
  return out
}

/** The one sample of `name` whose labels include `match` (undefined when none). */
export function value(body: string, name: string, match: Record<string, string> = {}): number | undefined {
  return samples(body, name).find((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))?.value
}

/** Sum of the samples of `name` whose labels include `match` (0 when none). */
export function sum(body: string, name: string, match: Record<string, string> = {}): number {
  return samples(body, name)
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}

export interface Scrape {
  ms: number
  status: number
  body: string
  /** performance.now() when the response was complete */
  at: number
}

export async function scrapeOnce(url: string): Promise<Scrape> {
  const started = performance.now()
  const response = await fetch(url)
  const body = await response.text()
  const at = performance.now()
  return { ms: at - started, status: response.status, body, at }
}

/**
 * Sequential scrapes, as Prometheus makes them per target; `onScrape` sees every response (for
 * the ages in it). `pauseMs` between scrapes; `warmup` unrecorded scrapes first.
 */
export async function scrapeSeries(
  url: string,
  count: number,
  options: { warmup?: number; pauseMs?: number; onScrape?: (scrape: Scrape) => void } = {},
): Promise<{ times: number[]; errors: number; lastBody: string }> {
  for (let i = 0; i < (options.warmup ?? 0); i += 1) await scrapeOnce(url)
  const times: number[] = []
  let errors = 0
  let lastBody = ''
  for (let i = 0; i < count; i += 1) {
    const scrape = await scrapeOnce(url)
    times.push(scrape.ms)
    if (scrape.status !== 200) errors += 1
    lastBody = scrape.body
    options.onScrape?.(scrape)
    if (options.pauseMs) await sleep(options.pauseMs)
  }
  return { times, errors, lastBody }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Polls /metrics every `pollMs` until `seen(body)`; resolves to the ms from `since` (performance.now())
 * to the first response that showed it, or null after `timeoutMs`.
 */
export async function visibleAfter(
  url: string,
  since: number,
  seen: (body: string) => boolean,
  options: { pollMs: number; timeoutMs: number },
): Promise<number | null> {
  for (;;) {
    const scrape = await scrapeOnce(url)
    if (seen(scrape.body)) return scrape.at - since
    if (performance.now() - since > options.timeoutMs) return null
    await sleep(options.pollMs)
  }
}
