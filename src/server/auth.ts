import { createHash, timingSafeEqual } from 'node:crypto'
import type { Request, RequestHandler } from 'express'
import { ApiError } from './errors.js'

/** Hashing first gives equal-length buffers, so the compare is constant-time whatever was sent. */
const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest()

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i

export interface AdminAuth {
  /** middleware for mutating routes: 403 when no token is configured, 401 without a token, 403 with a wrong one */
  require: RequestHandler
  /** whether this request carries the admin token (for read routes that show more to admins) */
  isAdmin: (req: Request) => boolean
}

export function adminAuth(token: string | undefined): AdminAuth {
  const expected = token === undefined ? undefined : digest(token)
  const presented = (req: Request): string | undefined => BEARER.exec(req.get('authorization') ?? '')?.[1]
  const matches = (candidate: string | undefined) =>
    expected !== undefined && candidate !== undefined && timingSafeEqual(digest(candidate), expected)
  return {
    isAdmin: (req) => matches(presented(req)),
    require(req, _res, next) {
      if (expected === undefined) {
        throw new ApiError(
          403,
          'mutations_disabled',
          'mutating routes are disabled: no admin token is configured (set WARDEN_ADMIN_TOKEN or server.adminToken, at least 16 characters)',
        )
      }
      const header = req.get('authorization')
      const challenge = { 'WWW-Authenticate': 'Bearer realm="warden"' }
      if (!header) throw new ApiError(401, 'unauthorized', 'this route needs an Authorization: Bearer <admin token> header', challenge)
      const candidate = presented(req)
      if (candidate === undefined)
        throw new ApiError(401, 'unauthorized', 'the Authorization header must be "Bearer <admin token>"', challenge)
      if (!matches(candidate)) throw new ApiError(403, 'forbidden', 'the bearer token is not the admin token')
      next()
    },
  }
}
