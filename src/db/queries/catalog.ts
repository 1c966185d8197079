import { sql } from '../sql.js'

export const findRelation = (schema: string, name: string) =>
  sql(
    'catalog.findRelation',
    `SELECT c.oid::int8 AS oid, c.relkind::text AS relkind
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  )

export const schemaExists = (schema: string) =>
  sql('catalog.schemaExists', `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1) AS "exists"`, [schema])

export const listTables = (schema: string) =>
  sql(
    'catalog.listTables',
    `SELECT c.relname AS name
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      ORDER BY c.relname
      LIMIT 50`,
    [schema],
  )

export const listColumns = (relationOid: number | string) =>
  sql(
    'catalog.listColumns',
    `SELECT a.attname AS name,
            pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            t.typname AS "typeName",
            t.typcategory AS category,
            a.attnotnull AS "notNull"
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [relationOid],
  )

export const timeZoneExists = (zone: string) =>
  sql('catalog.timeZoneExists', `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = $1) AS "exists"`, [zone])

/** Is there a unique index (or primary key) on exactly this one column? Keyset batching relies on it. */
export const hasUniqueIndexOn = (relationOid: number | string, column: string) =>
  sql(
    'catalog.hasUniqueIndexOn',
    `SELECT EXISTS (
       SELECT 1
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = $1::oid AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2
     ) AS "unique"`,
    [relationOid, column],
  )

/** The leading key (column or expression) of every valid index of a relation. */
export const indexFirstKeys = (relationOid: number | string) =>
  sql(
    'catalog.indexFirstKeys',
    `SELECT pg_get_indexdef(i.indexrelid, 1, true) AS "firstKey"
       FROM pg_catalog.pg_index i
      WHERE i.indrelid = $1::oid AND i.indisvalid`,
    [relationOid],
  )

export const serverVersion = () =>
  sql('catalog.serverVersion', `SELECT current_setting('server_version_num')::int AS "versionNum", version() AS version`)

/** Who holds a lock on a table (or one of its partitions) that a read or an UPDATE would wait for. */
export const tableLockHolders = (relationOid: number | string) =>
  sql(
    'catalog.tableLockHolders',
    `SELECT l.pid, COALESCE(a.application_name, '') AS "applicationName", l.mode, a.state
       FROM pg_catalog.pg_locks l
       LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
        AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
        AND l.relation IN (SELECT $1::oid UNION ALL SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1::oid)
      ORDER BY l.pid`,
    [relationOid],
  )
