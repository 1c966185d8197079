import { sql } from '../sql.js'

/**
 * PgBouncer admin console commands. The console speaks only the simple query protocol: run
 * these as client.query(text) with no values, never with bind parameters or a statement name.
 */
export const showPools = () => sql('pgbouncer.showPools', 'SHOW POOLS')
export const showStats = () => sql('pgbouncer.showStats', 'SHOW STATS')
export const showVersion = () => sql('pgbouncer.showVersion', 'SHOW VERSION')
