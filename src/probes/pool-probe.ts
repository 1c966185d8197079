import type { Database } from '../db/database.js'
import { probeAcquire, type AcquireProbe } from './acquire-probe.js'
import { probePgBouncer, type PgBouncerProbe } from './pgbouncer-probe.js'
import { probeServer, type ServerProbe, type ServerProbeOptions } from './server-probe.js'

export interface PoolProbeOptions extends ServerProbeOptions {
  /** deadline of the timed acquire (and of the PgBouncer console), ms */
  acquireTimeoutMs?: number
  /** PgBouncer admin console URL (postgres://user@host:port/pgbouncer); omitted: no PgBouncer section */
  pgbouncerUrl?: string
}

/** `warden pool probe --json`: one stable object. */
export interface PoolProbe {
  server: ServerProbe
  acquire: AcquireProbe
  pgbouncer: PgBouncerProbe | null
}

/**
 * The whole saturation picture. The server side runs first on Warden's already-open pooled
 * connection, which still works when the server has no slot left for a new one; the timed
 * acquire then shows what a newcomer meets.
 */
export async function probePool(db: Database, options: PoolProbeOptions = {}): Promise<PoolProbe> {
  const server = await probeServer(db, options)
  const [acquire, pgbouncer] = await Promise.all([
    probeAcquire(db.url, { timeoutMs: options.acquireTimeoutMs }),
    options.pgbouncerUrl ? probePgBouncer(options.pgbouncerUrl, { timeoutMs: options.acquireTimeoutMs }) : Promise.resolve(null),
  ])
  return { server, acquire, pgbouncer }
}
