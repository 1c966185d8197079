import type { CollectorFactory } from '../collector.js'
import { checksCollector } from './checks.js'
import { pgConnectionsCollector } from './pg-connections.js'
import { sessionsCollector } from './sessions.js'

export { checksCollector, pgConnectionsCollector, sessionsCollector }

export interface DefaultCollectorsOptions {
  /** run doctor's checks for the warden_check_* gauges (default true; false once the scheduler's doctor job reports them) */
  checks?: boolean
}

/**
 * The one list of database-derived collectors `warden serve` runs. A new topic is a file in
 * this directory (metrics, SQL, update function) and one line here. In-process metrics (the
 * instrumented pool's db_client_*, the chat path's gen_ai_*) need no collector: they register
 * into the same registry directly.
 */
export function defaultCollectors(options: DefaultCollectorsOptions = {}): CollectorFactory[] {
  return [sessionsCollector, pgConnectionsCollector, ...(options.checks === false ? [] : [checksCollector])]
}
