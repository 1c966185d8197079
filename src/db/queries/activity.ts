import { sql } from '../sql.js'

/**
 * Statements of the server-side pool probe. They run together in one read-only transaction:
 * PostgreSQL snapshots pg_stat_activity once per transaction, so counts, holders and blockers
 * describe the same instant, and pg_backend_pid() is the one backend the probe must leave out.
 */

/**
 * A backend that takes one of the max_connections slots. A role without pg_read_all_stats sees
 * other roles' backends with backend_type NULL; those that have a database and a user are
 * client connections (background processes have neither), so they still count.
 */
const CLIENT_BACKEND = `(a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datid IS NOT NULL AND a.usesysid IS NOT NULL))`

export const probeIdentity = () =>
  sql(
    'activity.identity',
    `SELECT pg_backend_pid() AS pid,
            current_user AS "user",
            current_database() AS database,
            now() AS "probedAt",
            current_setting('server_version_num')::int AS "versionNum",
            current_setting('server_version') AS version,
            pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS "canReadAllStats"`,
  )

/**
 * Settings by name: current_setting(name, true) is NULL where this server version lacks one;
 * pg_settings adds the unit (to normalise timeouts to ms) and the source (where a value came from).
 */
export const settings = (names: string[]) =>
  sql(
    'activity.settings',
    `SELECT n.name,
            current_setting(n.name, true) AS value,
            s.setting,
            s.unit,
            s.source
       FROM unnest($1::text[]) AS n(name)
       LEFT JOIN pg_catalog.pg_settings s ON s.name = n.name`,
    [names],
  )

/** ALTER ROLE / ALTER DATABASE ... SET overrides of the named settings: what apps of that role get. */
export const settingOverrides = (names: string[]) =>
  sql(
    'activity.settingOverrides',
    `SELECT r.rolname AS role,
            d.datname AS database,
            split_part(c.entry, '=', 1) AS name,
            substr(c.entry, length(split_part(c.entry, '=', 1)) + 2) AS value
       FROM pg_catalog.pg_db_role_setting s
       LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
       LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
      CROSS JOIN LATERAL unnest(s.setconfig) AS c(entry)
      WHERE split_part(c.entry, '=', 1) = ANY($1::text[])
      ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3`,
    [names],
  )

/** Client connections other than the probe's, grouped the way an SRE asks "who holds them?". */
export const connectionGroups = () =>
  sql(
    'activity.connectionGroups',
    `SELECT COALESCE(a.state, 'hidden') AS state,
            a.application_name AS "applicationName",
            a.usename AS "user",
            a.datname AS database,
            host(a.client_addr) AS "clientAddr",
            count(*)::int AS count,
            EXTRACT(EPOCH FROM (now() - min(a.xact_start)))::float8 AS "oldestTransactionSeconds"
       FROM pg_catalog.pg_stat_activity a
      WHERE ${CLIENT_BACKEND} AND a.pid <> pg_backend_pid()
      GROUP BY 1, 2, 3, 4, 5
      ORDER BY count(*) DESC, 2, 1`,
  )

export interface NotableBackendsOptions {
  queryLength: number
  longTransactionSeconds: number
}

/**
 * Backends worth naming: idle in a transaction, in a transaction older than the threshold,
 * waiting on a lock, or blocking one that waits. pg_blocking_pids takes lock-manager locks, so
 * it is only asked about backends that are waiting on a lock at all.
 * `queryIdColumn` is true on PostgreSQL 14+, where pg_stat_activity has query_id.
 */
export const notableBackends = (options: NotableBackendsOptions, queryIdColumn: boolean) =>
  sql(
    'activity.notableBackends',
    `WITH a AS (
       SELECT a.*,
              CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END AS blocked_by
         FROM pg_catalog.pg_stat_activity a
        WHERE ${CLIENT_BACKEND} AND a.pid <> pg_backend_pid()
     ), blockers AS (
       SELECT DISTINCT unnest(blocked_by) AS pid FROM a
     )
     SELECT a.pid,
            a.application_name AS "applicationName",
            a.usename AS "user",
            a.datname AS database,
            host(a.client_addr) AS "clientAddr",
            a.state,
            -- an aborted transaction has no xact_start: its failed statement started inside it, so that is a lower bound
            EXTRACT(EPOCH FROM (now() - COALESCE(a.xact_start, CASE WHEN a.state = 'idle in transaction (aborted)' THEN a.query_start END)))::float8 AS "transactionSeconds",
            EXTRACT(EPOCH FROM (now() - a.state_change))::float8 AS "stateSeconds",
            EXTRACT(EPOCH FROM (now() - a.query_start))::float8 AS "querySeconds",
            a.wait_event_type AS "waitEventType",
            a.wait_event AS "waitEvent",
            a.blocked_by AS "blockedBy",
            left(a.query, $1::int) AS query,
            length(a.query) > $1::int AS "queryTruncated",
            ${queryIdColumn ? 'a.query_id::text' : 'NULL::text'} AS "queryId"
       FROM a
      WHERE a.state LIKE 'idle in transaction%'
         OR a.xact_start < now() - make_interval(secs => $2::float8)
         OR cardinality(a.blocked_by) > 0
         OR a.pid IN (SELECT pid FROM blockers)
      ORDER BY a.xact_start NULLS LAST, a.pid`,
    [options.queryLength, options.longTransactionSeconds],
  )

/** The timed acquire's statement: the cheapest round trip that proves a session can run queries. */
export const acquireCheck = () => sql('activity.acquireCheck', 'SELECT 1')
