import { ApiError } from './errors.js'

const WINDOW_MS = 60_000
/** Bounded memory under a flood of distinct client addresses: the oldest keys go first. */
const MAX_KEYS = 10_000

/** Sliding one-minute windows of events per key. */
export class SlidingWindow {
  private readonly events = new Map<string, number[]>()

  constructor(
    readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  private recent(key: string, t: number): number[] {
    const list = this.events.get(key) ?? []
    while (list.length > 0 && list[0]! <= t - WINDOW_MS) list.shift()
    return list
  }

  /** Seconds until the key may act again, or 0 when it may now. */
  retryAfter(key: string): number {
    const t = this.now()
    const list = this.recent(key, t)
    return list.length >= this.perMinute ? Math.max(1, Math.ceil((list[0]! + WINDOW_MS - t) / 1000)) : 0
  }

  record(key: string): void {
    const t = this.now()
    const list = this.recent(key, t)
    list.push(t)
    this.events.delete(key)
    this.events.set(key, list)
    if (this.events.size > MAX_KEYS) this.events.delete(this.events.keys().next().value!)
  }
}

/**
 * A sliding one-minute window shared by all clients: mutations are rare, deliberate operations,
 * and the budget protects the database (each one takes the table's lock and runs batches), not
 * fairness between callers. It is spent only by requests that passed authentication and carry a
 * valid body, so neither a stranger nor a typo uses up the operators' budget.
 */
export function mutationBudget(perMinute: number, now?: () => number): { spend: () => void } {
  const window = new SlidingWindow(perMinute, now)
  return {
    spend() {
      const retryAfter = window.retryAfter('all')
      if (retryAfter > 0) {
        throw new ApiError(
          429,
          'rate_limited',
          `at most ${perMinute} mutating request(s) per minute (server.mutationsPerMinute); retry in ${retryAfter} s`,
          { 'Retry-After': String(retryAfter) },
        )
      }
      window.record('all')
    },
  }
}
