import type { RequestHandler } from 'express'
import { ApiError } from './errors.js'

const WINDOW_MS = 60_000

/**
 * A sliding one-minute window shared by all clients: mutations are rare, deliberate operations,
 * and the budget protects the database (each one takes the table's lock and runs batches), not
 * fairness between callers. It counts only requests that passed authentication, so a stranger
 * cannot spend the operators' budget.
 */
export function mutationRateLimit(perMinute: number, now: () => number = Date.now): RequestHandler {
  const recent: number[] = []
  return (_req, _res, next) => {
    const t = now()
    while (recent.length > 0 && recent[0]! <= t - WINDOW_MS) recent.shift()
    if (recent.length >= perMinute) {
      const retryAfter = Math.max(1, Math.ceil((recent[0]! + WINDOW_MS - t) / 1000))
      throw new ApiError(
        429,
        'rate_limited',
        `at most ${perMinute} mutating request(s) per minute (server.mutationsPerMinute); retry in ${retryAfter} s`,
        {
          'Retry-After': String(retryAfter),
        },
      )
    }
    recent.push(t)
    next()
  }
}
