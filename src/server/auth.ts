import { createHash, timingSafeEqual } from 'node:crypto'
import type { Request, RequestHandler } from 'express'
import { ApiError } from './errors.js'
import { SlidingWindow } from './rate-limit.js'
import { clientAddress } from './request.js'

/** Hashing first gives equal-length buffers, so the compare is constant-time whatever was sent. */
const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest()

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i

export interface AdminAuth {
  /** middleware for mutating routes: 403 when no token is configured, 401 without a token, 403 with a wrong one */
  require: RequestHandler
  /** whether this request carries the admin token (for read routes that show more to admins) */
  isAdmin: (req: Request) => boolean
}

export interface AdminAuthOptions {
  /** failed attempts per client address and minute before it is refused with 429 (a guessing defence) */
  failuresPerMinute?: number
  now?: () => number
}

export function adminAuth(token: string | undefined, options: AdminAuthOptions = {}): AdminAuth {
  const expected = token === undefined ? undefined : digest(token)
  const failures = new SlidingWindow(options.failuresPerMinute ?? 10, options.now)
  const refuse = (req: Request, error: ApiError): never => {
    failures.record(clientAddress(req))
    throw error
  }
  const presented = (req: Request): string | undefined => BEARER.exec(req.get('authorization') ?? '')?.[1]
  const matches = (candidate: string | undefined) =>
    expected !== undefined && candidate !== undefined && timingSafeEqual(digest(candidate), expected)
  return {
    // Read routes show more to the admin: a wrong token there counts as a failed guess too.
    isAdmin(req) {
      const candidate = presented(req)
      if (candidate === undefined || failures.retryAfter(clientAddress(req)) > 0) return false
      if (matches(candidate)) return true
      failures.record(clientAddress(req))
      return false
    },
    require(req, _res, next) {
      if (expected === undefined) {
        throw new ApiError(
          403,
          'mutations_disabled',
          'mutating routes are disabled: no admin token is configured (set WARDEN_ADMIN_TOKEN or server.adminToken, at least 16 characters)',
        )
      }
      // Checked before the token, so a client that keeps guessing cannot learn when it guessed right.
      const retryAfter = failures.retryAfter(clientAddress(req))
      if (retryAfter > 0) {
        throw new ApiError(
          429,
          'too_many_failures',
          `too many failed authentication attempts from this address; retry in ${retryAfter} s`,
          {
            'Retry-After': String(retryAfter),
          },
        )
      }
      const header = req.get('authorization')
      const challenge = { 'WWW-Authenticate': 'Bearer realm="warden"' }
      if (!header)
        refuse(req, new ApiError(401, 'unauthorized', 'this route needs an Authorization: Bearer <admin token> header', challenge))
      const candidate = presented(req)
      if (candidate === undefined)
        refuse(req, new ApiError(401, 'unauthorized', 'the Authorization header must be "Bearer <admin token>"', challenge))
      if (!matches(candidate)) refuse(req, new ApiError(403, 'forbidden', 'the bearer token is not the admin token'))
      next()
    },
  }
}
