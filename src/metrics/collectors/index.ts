import type { CollectorFactory } from '../collector.js'
import { appChecksCollector } from './app-checks.js'
import { activityChecksCollector, checksCollector } from './checks.js'
import { pgConnectionsCollector } from './pg-connections.js'
import { sessionsCollector } from './sessions.js'

export { activityChecksCollector, appChecksCollector, checksCollector, pgConnectionsCollector, sessionsCollector }

/**
 * The one list of database-derived collectors `warden serve` runs for every target. A new topic
 * is a file in this directory (metrics, SQL, update function) and one line here. In-process
 * metrics (the instrumented pool's db_client_*, the chat path's gen_ai_*) need no collector: they
 * register into the same registry directly.
 */
export function defaultCollectors(): CollectorFactory[] {
  return [sessionsCollector, pgConnectionsCollector, activityChecksCollector, checksCollector, appChecksCollector]
}
