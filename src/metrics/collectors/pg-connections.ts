import { Gauge } from 'prom-client'
import { sql } from '../../db/sql.js'
import type { CollectorFactory } from '../collector.js'
import { keptLabels, labelValue } from '../labels.js'

/**
 * Client backends of the whole server (every database: they all share max_connections), by
 * state and application_name, with the longest idle time among those idle in a transaction.
 * Warden's own connection counts too: it takes a slot like any other. A role without
 * pg_read_all_stats sees other roles' backends with state NULL (reported as "hidden") and
 * backend_type NULL; those with a database and a user are still client connections.
 */
export const connectionsByApplication = () =>
  sql(
    'metrics.pgConnections',
    `SELECT COALESCE(a.state, 'hidden') AS state,
            a.application_name AS "applicationName",
            count(*)::int AS count,
            (max(EXTRACT(EPOCH FROM (now() - a.state_change))) FILTER (WHERE a.state LIKE 'idle in transaction%'))::float8 AS "maxIdleInTransactionSeconds",
            current_setting('max_connections')::int AS "maxConnections"
       FROM pg_catalog.pg_stat_activity a
      WHERE a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datid IS NOT NULL AND a.usesysid IS NOT NULL)
      GROUP BY 1, 2`,
  )

interface Row {
  state: string
  applicationName: string | null
  count: number
  maxIdleInTransactionSeconds: number | null
  maxConnections: number
}

/**
 * Who holds the server's connections: the pool-exhaustion post-mortem seen from the server.
 * Idle-in-transaction time is measured like the doctor check does (since the backend's last
 * statement ended), which is how long an LLM call has been holding the transaction open.
 */
export const pgConnectionsCollector: CollectorFactory = ({ registry }) => {
  const registers = [registry]
  const connections = new Gauge({
    name: 'warden_pg_connections',
    help: 'Client connections to the PostgreSQL server by state (active, idle, idle in transaction, ..., hidden) and application_name.',
    labelNames: ['state', 'application_name'],
    registers,
  })
  const maxConnections = new Gauge({ name: 'warden_pg_connections_max', help: 'The server setting max_connections.', registers })
  const idleInTransaction = new Gauge({
    name: 'warden_pg_idle_in_transaction_max_seconds',
    help: 'Longest time a backend of each application_name has been idle inside an open transaction (since its last statement ended).',
    labelNames: ['application_name'],
    registers,
  })

  return {
    name: 'pg_connections',
    collect: (ctx) => ctx.readOnly((client) => ctx.db.rows<Row>(connectionsByApplication(), client)),
    update(rows: Row[]) {
      const perApp = new Map<string, number>()
      for (const row of rows) perApp.set(labelValue(row.applicationName), (perApp.get(labelValue(row.applicationName)) ?? 0) + row.count)
      const app = keptLabels([...perApp].map(([label, count]) => ({ label, count })))
      const counts = new Map<string, { state: string; application_name: string; value: number }>()
      const idle = new Map<string, number>()
      for (const row of rows) {
        const application_name = app(labelValue(row.applicationName))
        const key = `${row.state}\u0000${application_name}`
        const entry = counts.get(key) ?? { state: row.state, application_name, value: 0 }
        entry.value += row.count
        counts.set(key, entry)
        if (row.maxIdleInTransactionSeconds !== null)
          idle.set(application_name, Math.max(idle.get(application_name) ?? 0, row.maxIdleInTransactionSeconds))
      }
      connections.reset()
      idleInTransaction.reset()
      for (const { value, ...labels } of counts.values()) connections.set(labels, value)
      for (const [application_name, seconds] of idle) idleInTransaction.set({ application_name }, seconds)
      // the collector's own backend is always there, so rows is never empty
      if (rows[0]) maxConnections.set(rows[0].maxConnections)
    },
  }
}
