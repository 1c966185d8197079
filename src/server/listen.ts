import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Express } from 'express'

export interface ListeningServer {
  server: Server
  host: string
  port: number
  /** base URL, e.g. http://127.0.0.1:9477 */
  url: string
  /**
   * Stops accepting connections and waits for requests in flight; after `graceMs` the remaining
   * connections are cut. Resolves true when it had to cut them.
   */
  close: (graceMs: number) => Promise<boolean>
}

export const formatUrl = (host: string, port: number): string => `http://${host.includes(':') ? `[${host}]` : host}:${port}`

/** The one place the admin service listens. Port 0 picks a free port (tests). */
export async function listen(app: Express, host: string, port: number): Promise<ListeningServer> {
  const server = createServer(app)
  // Prometheus reuses its connection between scrapes; keep it open a little longer than its 1 s minimum interval.
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  let closing: Promise<boolean> | undefined
  // Node does not close a keep-alive connection whose request finishes after close() was called:
  // close it as soon as its response is out, so draining ends with the last request.
  server.on('request', (_req, res) => {
    res.on('finish', () => {
      if (closing) setImmediate(() => server.closeIdleConnections())
    })
  })
  return {
    server,
    host,
    port: address.port,
    url: formatUrl(host, address.port),
    close(graceMs) {
      closing ??= new Promise<boolean>((resolve) => {
        let forced = false
        const timer = setTimeout(() => {
          forced = true
          server.closeAllConnections()
        }, graceMs)
        timer.unref()
        // close() stops listening and (Node ≥ 19) closes idle keep-alive connections; busy ones end after their response
        server.close(() => {
          clearTimeout(timer)
          resolve(forced)
        })
        server.closeIdleConnections()
      })
      return closing
    },
  }
}
