import type { Database } from '../db/database.js'
import { connectionGroups, notableBackends, probeIdentity, settingOverrides, settings } from '../db/queries/activity.js'

export interface ServerProbeOptions {
  /** a transaction open at least this long is reported as long-running (seconds; default 60) */
  longTransactionSeconds?: number
  /** characters of each backend's query text to keep (default 200) */
  queryLength?: number
}

export const DEFAULT_LONG_TRANSACTION_SECONDS = 60
export const DEFAULT_QUERY_LENGTH = 200
/** The oldest PostgreSQL whose pg_stat_activity and settings this probe knows. */
export const MIN_SERVER_VERSION_NUM = 130000

/** Client connections of one state, application, role, database and address (the probe's own excluded). */
export interface ConnectionGroup {
  /** pg_stat_activity.state; 'hidden' when the probing role may not see it (no pg_read_all_stats) */
  state: string
  applicationName: string
  user: string | null
  database: string | null
  /** null for Unix-socket connections */
  clientAddr: string | null
  count: number
  oldestTransactionSeconds: number | null
}

export interface Connections {
  maxConnections: number
  superuserReserved: number
  /** reserved_connections (PostgreSQL 16+; 0 before): slots kept for pg_use_reserved_connections */
  reserved: number
  /** slots an ordinary role can use: maxConnections − superuserReserved − reserved */
  available: number
  /** client backends now, the probe's own connection included (it holds a slot too) */
  used: number
  /** available − used: ≤ 0 means the next ordinary connection fails with SQLSTATE 53300 */
  headroom: number
  /** other client backends by state ('hidden' for those the role may not see) */
  byState: Record<string, number>
  groups: ConnectionGroup[]
}

/** Who a backend is, enough to find it in the application. Fields are null where the role may not see them. */
export interface BackendRef {
  pid: number
  applicationName: string
  user: string | null
  database: string | null
  clientAddr: string | null
  state: string | null
  transactionSeconds: number | null
  /** truncated to queryLength; the current query when active, else the last one */
  query: string | null
  queryTruncated: boolean
  /** pg_stat_activity.query_id (PostgreSQL 14+, with compute_query_id): joins pg_stat_statements */
  queryId: string | null
}

/** A connection checked out and parked inside a transaction: the pool-exhaustion signature. */
export interface IdleInTransaction extends BackendRef {
  state: 'idle in transaction' | 'idle in transaction (aborted)'
  aborted: boolean
  transactionSeconds: number
  /** since the last statement finished (now − state_change) */
  idleSeconds: number
}

export interface LongTransaction extends BackendRef {
  transactionSeconds: number
}

export interface LockWait extends BackendRef {
  /** since the waiting statement started (PostgreSQL records no lock-wait start) */
  waitingSeconds: number | null
  waitEvent: string | null
  /** pg_blocking_pids(), resolved to the backends where the probe can see them */
  blockedBy: BackendRef[]
}

export interface TimeoutSetting {
  name: string
  /** false where this server version has no such setting */
  available: boolean
  /** as PostgreSQL shows it ('30s', '0'); null when unavailable */
  value: string | null
  /** normalised to milliseconds; 0 means off; null when unavailable */
  ms: number | null
  /**
   * pg_settings.source: 'default', 'configuration file', 'database', 'user', ... 'client' means the
   * probe's own connection set it (Warden sets statement_timeout), so it says nothing of the apps.
   */
  source: string | null
}

export interface Timeouts {
  idleInTransactionSessionTimeout: TimeoutSetting
  /** PostgreSQL 14+ */
  idleSessionTimeout: TimeoutSetting
  statementTimeout: TimeoutSetting
  lockTimeout: TimeoutSetting
  /** PostgreSQL 17+ */
  transactionTimeout: TimeoutSetting
}

/** ALTER ROLE / ALTER DATABASE ... SET of a timeout: what sessions of that role or database get instead. */
export interface SettingOverride {
  role: string | null
  database: string | null
  name: string
  value: string
}

export interface ServerProbe {
  probedAt: string
  server: { versionNum: number; version: string }
  /** the probe's own session, left out of every list and group */
  probe: { pid: number; user: string; database: string; canReadAllStats: boolean }
  longTransactionSeconds: number
  queryLength: number
  connections: Connections
  /** oldest transaction first */
  idleInTransaction: IdleInTransaction[]
  /** any state; oldest first */
  longTransactions: LongTransaction[]
  lockWaits: LockWait[]
  timeouts: Timeouts
  timeoutOverrides: SettingOverride[]
  /** other roles' backends whose state and query the probing role may not see */
  hiddenBackends: number
  /** true when some query text (and state) showed as <insufficient privilege> */
  queryTextHidden: boolean
  warnings: string[]
}

interface NotableRow {
  pid: number
  applicationName: string
  user: string | null
  database: string | null
  clientAddr: string | null
  state: string | null
  transactionSeconds: number | null
  stateSeconds: number | null
  querySeconds: number | null
  waitEventType: string | null
  waitEvent: string | null
  blockedBy: number[]
  query: string | null
  queryTruncated: boolean
  queryId: string | null
}

interface SettingRow {
  name: string
  value: string | null
  setting: string | null
  unit: string | null
  source: string | null
}

const TIMEOUT_NAMES: Record<keyof Timeouts, { name: string; since: number }> = {
  idleInTransactionSessionTimeout: { name: 'idle_in_transaction_session_timeout', since: 90600 },
  idleSessionTimeout: { name: 'idle_session_timeout', since: 140000 },
  statementTimeout: { name: 'statement_timeout', since: 0 },
  lockTimeout: { name: 'lock_timeout', since: 0 },
  transactionTimeout: { name: 'transaction_timeout', since: 170000 },
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }
const HIDDEN_QUERY = '<insufficient privilege>'

/** The settings this server version has; asking only for those keeps the SQL honest per version. */
function settingNames(versionNum: number): string[] {
  const names = ['max_connections', 'superuser_reserved_connections']
  if (versionNum >= 160000) names.push('reserved_connections')
  for (const { name, since } of Object.values(TIMEOUT_NAMES)) if (versionNum >= since) names.push(name)
  return names
}

function timeoutSetting(name: string, row: SettingRow | undefined): TimeoutSetting {
  if (!row || row.value === null) return { name, available: false, value: null, ms: null, source: null }
  const factor = UNIT_MS[row.unit ?? 'ms'] ?? 1
  const raw = Number(row.setting)
  return { name, available: true, value: row.value, ms: Number.isFinite(raw) ? raw * factor : null, source: row.source }
}

const intSetting = (rows: Map<string, SettingRow>, name: string): number => Number(rows.get(name)?.setting ?? 0) || 0

function toRef(row: NotableRow): BackendRef {
  const hidden = row.query === HIDDEN_QUERY
  return {
    pid: row.pid,
    applicationName: row.applicationName,
    user: row.user,
    database: row.database,
    clientAddr: row.clientAddr,
    state: row.state,
    transactionSeconds: row.transactionSeconds,
    query: hidden ? null : row.query,
    queryTruncated: !hidden && row.queryTruncated,
    queryId: row.queryId,
  }
}

/**
 * What the server says about its connections right now: slot headroom, who is parked idle in a
 * transaction (and for how long, after which query), who waits on whose lock, which transactions
 * run long, and the timeouts that would end them. Read-only; one transaction, one snapshot.
 */
export async function probeServer(db: Database, options: ServerProbeOptions = {}): Promise<ServerProbe> {
  const longTransactionSeconds = options.longTransactionSeconds ?? DEFAULT_LONG_TRANSACTION_SECONDS
  const queryLength = Math.max(1, Math.floor(options.queryLength ?? DEFAULT_QUERY_LENGTH))
  return db.transaction(async (client) => {
    const [identity] = await db.rows<{
      pid: number
      user: string
      database: string
      probedAt: Date
      canReadAllStats: boolean
      versionNum: number
      version: string
    }>(probeIdentity(), client)
    const self = identity!
    const names = settingNames(self.versionNum)
    const settingRows = new Map((await db.rows<SettingRow>(settings(names), client)).map((row) => [row.name, row]))
    const timeoutNames = Object.values(TIMEOUT_NAMES).map((t) => t.name)
    const overrides = await db.rows<SettingOverride>(settingOverrides(timeoutNames), client)
    const groups = await db.rows<ConnectionGroup>(connectionGroups(), client)
    const notable = await db.rows<NotableRow>(notableBackends({ queryLength, longTransactionSeconds }, self.versionNum >= 140000), client)

    const maxConnections = intSetting(settingRows, 'max_connections')
    const superuserReserved = intSetting(settingRows, 'superuser_reserved_connections')
    const reserved = intSetting(settingRows, 'reserved_connections')
    const byState: Record<string, number> = {}
    for (const group of groups) byState[group.state] = (byState[group.state] ?? 0) + group.count
    const others = groups.reduce((sum, group) => sum + group.count, 0)
    const available = maxConnections - superuserReserved - reserved
    const used = others + 1

    const byPid = new Map(notable.map((row) => [row.pid, row]))
    const idleInTransaction = notable
      .filter((row) => row.state?.startsWith('idle in transaction'))
      .map((row): IdleInTransaction => ({
        ...toRef(row),
        state: row.state as IdleInTransaction['state'],
        aborted: row.state === 'idle in transaction (aborted)',
        transactionSeconds: row.transactionSeconds ?? 0,
        idleSeconds: row.stateSeconds ?? 0,
      }))
    const longTransactions = notable
      .filter((row) => row.transactionSeconds !== null && row.transactionSeconds >= longTransactionSeconds)
      .map((row): LongTransaction => ({ ...toRef(row), transactionSeconds: row.transactionSeconds! }))
    const lockWaits = notable
      .filter((row) => row.blockedBy.length > 0)
      .map((row): LockWait => ({
        ...toRef(row),
        waitingSeconds: row.querySeconds,
        waitEvent: row.waitEvent,
        blockedBy: row.blockedBy.map((pid) => {
          const blocker = byPid.get(pid)
          return blocker
            ? toRef(blocker)
            : {
                pid,
                applicationName: '',
                user: null,
                database: null,
                clientAddr: null,
                state: null,
                transactionSeconds: null,
                query: null,
                queryTruncated: false,
                queryId: null,
              }
        }),
      }))
    const byWait = (a: LockWait, b: LockWait) => (b.waitingSeconds ?? 0) - (a.waitingSeconds ?? 0)

    const hiddenBackends = byState.hidden ?? 0
    const warnings: string[] = []
    if (self.versionNum < MIN_SERVER_VERSION_NUM) {
      warnings.push(`PostgreSQL ${self.version} is older than 13, the oldest version this probe supports: some figures may be missing`)
    }
    if (hiddenBackends > 0) {
      warnings.push(
        `${hiddenBackends} connection(s) of other roles are hidden from role ${self.user} (state and query show as ${HIDDEN_QUERY}): ` +
          `idle-in-transaction holders and long transactions among them cannot be seen; GRANT pg_read_all_stats TO ${self.user}`,
      )
    }

    return {
      probedAt: new Date(self.probedAt).toISOString(),
      server: { versionNum: self.versionNum, version: self.version },
      probe: { pid: self.pid, user: self.user, database: self.database, canReadAllStats: self.canReadAllStats },
      longTransactionSeconds,
      queryLength,
      connections: { maxConnections, superuserReserved, reserved, available, used, headroom: available - used, byState, groups },
      idleInTransaction,
      longTransactions,
      lockWaits: lockWaits.sort(byWait),
      timeouts: Object.fromEntries(
        Object.entries(TIMEOUT_NAMES).map(([key, { name }]) => [key, timeoutSetting(name, settingRows.get(name))]),
      ) as unknown as Timeouts,
      timeoutOverrides: overrides,
      hiddenBackends,
      queryTextHidden: hiddenBackends > 0 || notable.some((row) => row.query === HIDDEN_QUERY),
      warnings,
    }
  })
}
