import {
  checkTiles,
  GREEN,
  dashboard,
  fleetVariables,
  labelVariable,
  sel,
  standardVariables,
  stat,
  TARGET,
  timeseries,
  type Dashboard,
} from '../model.js'

const RATE = '[$__rate_interval]'
/** OpenTelemetry's attribute names as Prometheus spells them: Warden's pools and OpenTelemetry-instrumented apps alike */
const POOL_NAME = 'db_client_connection_pool_name'
const STATE = 'db_client_connection_state'
const POOL = `${POOL_NAME}=~"$pool"`
const QUANTILES = [0.5, 0.95, 0.99]

/** The checks of `warden doctor` that look at connections and transactions. */
export const POOL_CHECKS = ['idle-in-transaction', 'long-transactions', 'blocked-backends', 'connection-headroom', 'timeout-settings']
const poolChecks = `check=~"${POOL_CHECKS.join('|')}"`

/** Thresholds of prometheus/alerts.yml, drawn where the same signal is plotted. */
const POOL_WAIT_ALERT_SECONDS = 1
const IDLE_IN_TRANSACTION_ALERT_SECONDS = 30
const HEADROOM_ALERT_RATIO = 0.9

/**
 * rate() of a pool histogram's buckets under both spellings: Warden's (`…_seconds_bucket`) and
 * OpenTelemetry's JavaScript Prometheus exporter's, which leaves the unit out (`…_bucket`).
 */
export const poolBucketRate = (unitless: string, ...extra: string[]) =>
  `rate(${sel(`${unitless}_seconds_bucket`, ...extra)}${RATE}) or rate(${sel(`${unitless}_bucket`, ...extra)}${RATE})`

const quantiles = (unitless: string) =>
  QUANTILES.map((q) => ({
    expr: `histogram_quantile(${q}, sum by (le, ${POOL_NAME}) (${poolBucketRate(unitless, POOL)}))`,
    legend: `{{${POOL_NAME}}} p${Math.round(q * 100)}`,
  }))

/**
 * Warden's database-derived series of the selected targets. The db_client_connection_* series
 * are the pools' (Warden's own, named warden:<target>, and apps'): they have no target label.
 */
const server = (metric: string, ...extra: string[]) => sel(metric, TARGET, ...extra)

/** used / max_connections per Warden instance and target: each target is one server's view. */
const BY_SERVER = 'job, instance, target'
const usedRatio = `sum by (${BY_SERVER}) (${server('warden_pg_connections')}) / on (${BY_SERVER}) max by (${BY_SERVER}) (${server('warden_pg_connections_max')})`

export function poolDashboard(): Dashboard {
  return dashboard({
    uid: 'warden-pool',
    title: 'Warden / Pool & database',
    description:
      'Client pools (OpenTelemetry db.client.connection.* metrics, from Warden and any app using its instrumented pool) and each target database server as pg_stat_activity shows it: who holds connections, idle-in-transaction holders, headroom.',
    variables: [
      ...standardVariables('db_client_connection_count'),
      ...fleetVariables({ tables: false }),
      labelVariable(
        'pool',
        'Pool',
        `label_values(db_client_connection_count{job=~"$job", instance=~"$instance"}, ${POOL_NAME})`,
        "Client pool (db_client_connection_pool_name): warden:<target> and warden_collector:<target> are Warden's own; the others are apps using the instrumented pool or OpenTelemetry's pg instrumentation. Pools carry no target label: the Target variable does not filter them.",
      ),
    ],
    sections: [
      {
        title: 'Now',
        panels: [
          stat({
            title: 'Targets reachable',
            description:
              "One tile per selected target: whether the last collection of every selected Warden instance reached that target's PostgreSQL. While a target is down its gauges keep their last values (WardenTargetDown).",
            unit: 'none',
            w: 4,
            colorMode: 'background',
            showNames: true,
            sparkline: false,
            mappings: [
              { type: 'value', options: { '0': { text: 'down', color: 'red', index: 0 }, '1': { text: 'up', color: 'green', index: 1 } } },
            ],
            thresholds: [
              { color: 'red', value: null },
              { color: 'green', value: 1 },
            ],
            queries: [{ expr: `min by (target) (${server('warden_target_up')})`, legend: '{{target}}' }],
          }),
          stat({
            title: 'Connection slots used',
            description: `Client connections of a target's whole server as a share of max_connections, the highest among the selected targets and instances. Red at ${HEADROOM_ALERT_RATIO * 100} %: WardenConnectionHeadroomLow. Slots reserved for superusers are not subtracted.`,
            unit: 'percentunit',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: 0.8 }, { color: 'red', value: HEADROOM_ALERT_RATIO }],
            queries: [{ expr: `max(${usedRatio})`, legend: 'used' }],
          }),
          stat({
            title: 'Free connection slots',
            description:
              'max_connections minus the client connections open now, the lowest among the selected targets and instances: how many more connections a pool increase or a new replica can take before "too many clients".',
            unit: 'short',
            w: 4,
            thresholds: [
              { color: 'red', value: null },
              { color: 'yellow', value: 5 },
              { color: 'green', value: 20 },
            ],
            queries: [
              {
                expr: `min(max by (${BY_SERVER}) (${server('warden_pg_connections_max')}) - on (${BY_SERVER}) sum by (${BY_SERVER}) (${server('warden_pg_connections')}))`,
                legend: 'free',
              },
            ],
          }),
          stat({
            title: 'Longest idle in transaction',
            description: `Longest time any backend of the selected targets has sat idle inside an open transaction: an app holding a transaction across an LLM call. 0 when none is. Red past ${IDLE_IN_TRANSACTION_ALERT_SECONDS} s (WardenIdleInTransactionLong).`,
            unit: 's',
            w: 4,
            colorMode: 'background',
            thresholds: [GREEN, { color: 'yellow', value: 10 }, { color: 'red', value: IDLE_IN_TRANSACTION_ALERT_SECONDS }],
            queries: [{ expr: `max(${server('warden_pg_idle_in_transaction_max_seconds')}) or on () vector(0)`, legend: 'longest' }],
          }),
          stat({
            title: 'Pool timeouts',
            description:
              'connect() calls per minute that gave up because no connection became free within connectionTimeoutMillis, all selected pools: users see errors (WardenPoolTimeouts).',
            unit: 'cpm',
            w: 4,
            colorMode: 'background',
            thresholds: [GREEN, { color: 'red', value: 0.001 }],
            queries: [{ expr: `60 * sum(rate(${sel('db_client_connection_timeouts_total', POOL)}${RATE}))`, legend: 'timeouts' }],
          }),
          stat({
            title: 'LLM calls holding a connection',
            description:
              'LLM calls per minute that started while the same request still held a checked-out connection (llmCall of the instrumented pool): the release-before-call rule broken. 0 when it never happened.',
            unit: 'cpm',
            w: 4,
            colorMode: 'background',
            thresholds: [GREEN, { color: 'orange', value: 0.001 }],
            queries: [
              {
                expr: `60 * sum(rate(${sel('warden_db_connection_held_during_llm_call_total', POOL)}${RATE})) or on () vector(0)`,
                legend: 'held',
              },
            ],
          }),
        ],
      },
      {
        title: 'Client pools (db_client_connection_*)',
        panels: [
          timeseries({
            title: 'Pool connections by state',
            description:
              'Connections of each client pool: idle in the pool, or used (checked out, or being opened). used pinned at the pool max with pending requests beside it is an exhausted pool.',
            unit: 'short',
            stack: true,
            queries: [
              {
                expr: `sum by (${POOL_NAME}, ${STATE}) (${sel('db_client_connection_count', POOL)})`,
                legend: `{{${POOL_NAME}}} {{${STATE}}}`,
              },
            ],
          }),
          timeseries({
            title: 'Pool connections used of max',
            description:
              'Connections each client pool has checked out (or is opening) as a share of its max (db_client_connection_max). At 100 % every further connect() waits: see pending requests and wait time.',
            unit: 'percentunit',
            max: 1,
            queries: [
              {
                expr: `sum by (${POOL_NAME}) (${sel('db_client_connection_count', POOL, `${STATE}="used"`)}) / sum by (${POOL_NAME}) (${sel('db_client_connection_max', POOL)})`,
                legend: `{{${POOL_NAME}}}`,
              },
            ],
          }),
          timeseries({
            title: 'Pending connection requests',
            description:
              'connect() calls of each pool still waiting for a connection (queued, or waiting for a new one to open). Anything above 0 for long means the pool is too small for how long connections are held.',
            unit: 'short',
            queries: [
              { expr: `sum by (${POOL_NAME}) (${sel('db_client_connection_pending_requests', POOL)})`, legend: `{{${POOL_NAME}}}` },
            ],
          }),
          timeseries({
            title: 'Connection wait time',
            description: `p50, p95 and p99 of the time from connect() to a connection in hand, per pool, successful acquires only (timeouts are counted apart). Dashed line: ${POOL_WAIT_ALERT_SECONDS} s p95, WardenPoolWaitHigh.`,
            unit: 's',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: POOL_WAIT_ALERT_SECONDS }],
            queries: quantiles('db_client_connection_wait_time'),
          }),
          timeseries({
            title: 'Connection use time',
            description:
              'p50, p95 and p99 of how long a connection stays checked out, acquire to release, per pool. Seconds here, as long as an LLM call, are connections held across the call.',
            unit: 's',
            queries: quantiles('db_client_connection_use_time'),
          }),
          timeseries({
            title: 'Pool timeouts by pool',
            description:
              'connect() calls per minute that failed after connectionTimeoutMillis, per pool: the "QueuePool limit reached, connection timed out" failure of post-mortem 1.',
            unit: 'cpm',
            queries: [
              {
                expr: `60 * sum by (${POOL_NAME}) (rate(${sel('db_client_connection_timeouts_total', POOL)}${RATE}))`,
                legend: `{{${POOL_NAME}}}`,
              },
            ],
          }),
          timeseries({
            title: 'LLM calls made while holding a connection',
            description:
              'LLM calls per minute that started while their request held a checked-out connection, by pool and operation (the llmCall label). The series appears with the first such call; no data means it never happened. The service log names the call site.',
            unit: 'cpm',
            queries: [
              {
                expr: `60 * sum by (${POOL_NAME}, operation) (rate(${sel('warden_db_connection_held_during_llm_call_total', POOL)}${RATE}))`,
                legend: `{{${POOL_NAME}}} {{operation}}`,
              },
            ],
          }),
        ],
      },
      {
        title: 'PostgreSQL servers of the targets (pg_stat_activity)',
        panels: [
          timeseries({
            title: 'Server connections by state',
            description:
              "Client backends of each target's whole server by state (active, idle, idle in transaction, hidden when the role lacks pg_read_all_stats). Pick one instance per server: replicas watching the same server are added up.",
            unit: 'short',
            w: 8,
            stack: true,
            queries: [{ expr: `sum by (target, state) (${server('warden_pg_connections')})`, legend: '{{target}} {{state}}' }],
          }),
          timeseries({
            title: 'Server connections by application',
            description:
              'Client backends of each target\'s server by application_name: which app holds the server\'s connections. Beyond the 50 largest, applications are folded into "(other)". Pick one instance per server.',
            unit: 'short',
            w: 8,
            stack: true,
            queries: [
              { expr: `sum by (target, application_name) (${server('warden_pg_connections')})`, legend: '{{target}} {{application_name}}' },
            ],
          }),
          timeseries({
            title: 'Idle in transaction, longest by application',
            description: `Longest time a backend of each application, per target, has been idle inside an open transaction (since its last statement ended): how long an LLM call has been holding it. Dashed line: ${IDLE_IN_TRANSACTION_ALERT_SECONDS} s, WardenIdleInTransactionLong.`,
            unit: 's',
            w: 8,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: IDLE_IN_TRANSACTION_ALERT_SECONDS }],
            queries: [
              {
                expr: `max by (target, application_name) (${server('warden_pg_idle_in_transaction_max_seconds')})`,
                legend: '{{target}} {{application_name}}',
              },
            ],
          }),
          timeseries({
            title: 'Connections and max_connections',
            description:
              "Client connections open on each target's server against its max_connections setting, per target and Warden instance. The gap is the headroom; bigger pools only move the cliff closer.",
            unit: 'short',
            queries: [
              { expr: `sum by (instance, target) (${server('warden_pg_connections')})`, legend: 'connections {{target}} {{instance}}' },
              {
                expr: `max by (instance, target) (${server('warden_pg_connections_max')})`,
                legend: 'max_connections {{target}} {{instance}}',
              },
            ],
          }),
          timeseries({
            title: 'Connection slots used',
            description: `Client connections as a share of max_connections, per target and Warden instance. Dashed line: ${HEADROOM_ALERT_RATIO * 100} %, WardenConnectionHeadroomLow.`,
            unit: 'percentunit',
            max: 1,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: HEADROOM_ALERT_RATIO }],
            queries: [{ expr: usedRatio, legend: '{{target}} {{instance}}' }],
          }),
        ],
      },
      {
        title: "Targets and Warden's metrics collection",
        panels: [
          timeseries({
            title: 'Targets reachable',
            description: "Whether each Warden instance's last collection reached each target's PostgreSQL (1) or not (0).",
            unit: 'none',
            w: 8,
            max: 1,
            queries: [{ expr: `min by (instance, target) (${server('warden_target_up')})`, legend: '{{target}} {{instance}}' }],
          }),
          timeseries({
            title: 'Metrics age by collector',
            description:
              "Seconds since each target's collectors (sessions, pg_connections, and checks unless the scheduler runs doctor) last succeeded: how stale the gauges on these dashboards are. Grows past server.collectInterval when a collector fails or times out.",
            unit: 's',
            w: 8,
            queries: [
              {
                expr: `time() - max by (target, collector) (${server('warden_collect_last_success_timestamp_seconds')})`,
                legend: '{{target}} {{collector}}',
              },
            ],
          }),
          timeseries({
            title: 'Collector run time',
            description:
              "Duration of the last run of each target's collectors. One nearing server.collectTimeout (5 s by default) is about to start failing and leaving its gauges stale.",
            unit: 's',
            w: 8,
            queries: [
              { expr: `max by (target, collector) (${server('warden_collector_duration_seconds')})`, legend: '{{target}} {{collector}}' },
            ],
          }),
        ],
      },
      {
        title: 'Checks',
        panels: [
          ...checkTiles(poolChecks, {
            statusTitle: 'Connection and transaction checks',
            statusDescription: `Last verdict of the checks of warden doctor that look at connections and transactions (${POOL_CHECKS.join(', ')}), per target: ok, warning or critical. Run \`warden doctor\` or \`warden pool probe\` for the holders.`,
            successTitle: 'Checks that could not run',
            successDescription:
              'Whether the last run of each of these checks could run (1) or failed, e.g. on a timeout (0). A failed check keeps its last verdict.',
          }),
          timeseries({
            title: 'Check duration',
            description:
              'How long the last run of each doctor check took on each target, all checks. A check creeping towards server.collectTimeout will soon fail and keep a stale verdict.',
            unit: 's',
            w: 24,
            h: 6,
            queries: [{ expr: `max by (target, check) (${server('warden_check_duration_seconds')})`, legend: '{{target}} {{check}}' }],
          }),
        ],
      },
    ],
  })
}
