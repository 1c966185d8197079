import type { Request } from 'express'

declare module 'express-serve-static-core' {
  interface Request {
    /** x-request-id from the client when it looks sane, else a fresh one; echoed in the response */
    id: string
  }
}

/** The client's address without the IPv4-mapped prefix: what the audit log records as `api:<ip>`. */
export function clientAddress(req: Request): string {
  const address = req.ip ?? req.socket.remoteAddress ?? 'unknown'
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

export const apiActor = (req: Request): string => `api:${clientAddress(req)}`
