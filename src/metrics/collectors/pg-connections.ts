import { Gauge } from 'prom-client'
import { sql } from '../../db/sql.js'
import type { CollectorFactory } from '../collector.js'
import { keptLabels, labelValue } from '../labels.js'
import { TargetSeries } from '../series.js'

/**
 * Client backends of the target's whole server (every database: they all share
 * max_connections), by state and application_name, with the longest idle time among those idle
 * in a transaction. Warden's own backends (application_name = database.applicationName, the
 * collector's own included) are left out: a collector that counted its own read-only
 * transaction would report an "idle in transaction" that only exists because it looked. A role
 * without pg_read_all_stats sees other roles' backends with state NULL (reported as "hidden") and
 * backend_type NULL; those with a database and a user are still client connections.
 */
export const connectionsByApplication = (ownApplicationName: string) =>
  sql(
    'metrics.pgConnections',
    `SELECT COALESCE(a.state, 'hidden') AS state,
            a.application_name AS "applicationName",
            count(*)::int AS count,
            (max(EXTRACT(EPOCH FROM (now() - a.state_change))) FILTER (WHERE a.state LIKE 'idle in transaction%'))::float8 AS "maxIdleInTransactionSeconds",
            current_setting('max_connections')::int AS "maxConnections"
       FROM pg_catalog.pg_stat_activity a
      WHERE (a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datid IS NOT NULL AND a.usesysid IS NOT NULL))
        AND a.pid <> pg_backend_pid()
        AND a.application_name IS DISTINCT FROM $1
      GROUP BY 1, 2`,
    [ownApplicationName],
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
    help: "Client connections to each target's PostgreSQL server by state (active, idle, idle in transaction, ..., hidden) and application_name; Warden's own backends are not counted.",
    labelNames: ['target', 'state', 'application_name'],
    registers,
  })
  const maxConnections = new Gauge({
    name: 'warden_pg_connections_max',
    help: "Each target server's max_connections.",
    labelNames: ['target'],
    registers,
  })
  const idleInTransaction = new Gauge({
    name: 'warden_pg_idle_in_transaction_max_seconds',
    help: "Longest time a backend of each application_name has been idle inside an open transaction (since its last statement ended); Warden's own backends are not counted.",
    labelNames: ['target', 'application_name'],
    registers,
  })
  const series = { connections: new TargetSeries(connections), idle: new TargetSeries(idleInTransaction) }

  return {
    name: 'pg_connections',
    collect: (ctx) =>
      ctx.readOnly(async (client) => ({
        rows: await ctx.db.rows<Row>(connectionsByApplication(ctx.target.database.applicationName), client),
        max: (await ctx.db.rows<{ max: number }>(maxConnectionsSetting(), client))[0]!.max,
      })),
    update({ rows, max }: { rows: Row[]; max: number }, target) {
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
      series.connections.replace(
        target,
        [...counts.values()].map(({ value, ...labels }) => ({ labels: { target, ...labels }, value })),
      )
      series.idle.replace(
        target,
        [...idle].map(([application_name, seconds]) => ({ labels: { target, application_name }, value: seconds })),
      )
      maxConnections.set({ target }, max)
    },
  }
}

/** Without Warden's own backend, the rows can be empty: max_connections comes on its own. */
const maxConnectionsSetting = () => sql('metrics.maxConnections', `SELECT current_setting('max_connections')::int AS max`)
