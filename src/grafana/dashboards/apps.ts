import { APP_CHECKS } from '../../checks/index.js'
import { configSchema } from '../../core/config-schema.js'
import {
  GEN_AI_DURATION,
  VARIANTS,
  genAiQuantile,
  genAiRate,
  maxNow,
  pendingNow,
  timeQuantile,
  timeoutsPerMinute,
  useSecondsRate,
  usedNow,
  type Matchers,
} from '../../prometheus/app-metrics.js'
import {
  checkTiles,
  datasourceVariable,
  dashboard,
  fleetVariables,
  GREEN,
  labelVariable,
  sel,
  stat,
  TARGET,
  timeseries,
  type Dashboard,
} from '../model.js'

/*
 * The signals of doctor's app-* checks (src/checks/app-*.ts), per application job and pool, for
 * apps Warden did not instrument. Every pool and GenAI query is built by src/prometheus/app-metrics.ts,
 * the checks' own builders, so the dashboard reads every spelling the checks read (OTLP and the
 * Collector's `…_seconds`, OpenTelemetry JS's unit-less histograms, the older
 * db_client_connections_* with pool_name/state and milliseconds) and normalises the pool label to
 * `pool` and the unit to seconds the same way; only the window differs: Grafana's
 * $__rate_interval instead of prometheus.window.
 */

const RATE = '$__rate_interval'
const re = (variable: string) => ({ regex: `$${variable}` })
/** An app's pool series: the selected jobs, instances and pools (`pool` is each spelling's own pool label). */
const POOLS: Matchers = { job: re('job'), instance: re('instance'), pool: re('pool') }
/** Per job, every pool: what PostgreSQL's per-application view is compared with, and the GenAI series (which have no pool). */
const JOBS: Matchers = { job: re('job'), instance: re('instance') }
const POOL_LEGEND = '{{job}} {{pool}}'
const LLM_BY = 'job, gen_ai_request_model'

/** The app-* checks' default thresholds, read from the config schema (percentages as ratios), and prometheus/alerts-apps.yml's level. */
const CHECK_DEFAULTS = configSchema.parse({}).checks
const ratios = ({ warn, crit }: { warn: number; crit: number }) => ({ warn: warn / 100, crit: crit / 100 })
const POOL_USED = { ...ratios(CHECK_DEFAULTS.appPoolUsed), alert: 0.9 }
const WAIT_P99_SECONDS = CHECK_DEFAULTS.appPoolWaitP99
const HELD_P95_SECONDS = CHECK_DEFAULTS.appHeldP95
const HELD_IDLE = ratios(CHECK_DEFAULTS.appHeldIdle)
const LLM_ERRORS = ratios(CHECK_DEFAULTS.appLlmErrors)

const ratio = (numerator: string, denominator: string) => `(${numerator}) / (${denominator})`
const poolUsedRatio = ratio(usedNow(POOLS), maxNow(POOLS))

/**
 * Connections a job has checked out: the mean over the rate interval from the use-time
 * histogram where the job exports it (Little's law, as app-held-idle and app-pool-saturation do:
 * instrumentation-pg's used gauge stays one high after a release), else the used gauge.
 */
const usedByJob = `(sum by (job) (${useSecondsRate(RATE, JOBS)}) or sum by (job) (${usedNow(JOBS)}))`

/**
 * Warden's warden_pg_connections with application_name copied into `job`, to be joined with the
 * apps' series by job: the rule prometheus/alerts-apps.yml follows, since a dashboard cannot read
 * the `apps:` mapping that `warden doctor` uses. The selector keeps job and instance (Warden's own
 * scrape job and instance, which the Job and Instance variables must include).
 */
const serverByJob = (...extra: string[]) =>
  `label_replace(${sel('warden_pg_connections', TARGET, ...extra)}, "job", "$1", "application_name", "(.+)")`
/** idle, idle in transaction and idle in transaction (aborted) */
const IDLE_STATES = 'state=~"idle|idle in transaction.*"'

/** clamp(used − active on the server, 0) per job, only where Warden sees the job's application_name at all. */
const heldIdleShare =
  `clamp_min(${usedByJob} - on (job) (sum by (job) (${serverByJob('state="active"')}) or 0 * ${usedByJob}), 0)` +
  ` / on (job) sum by (job) (${maxNow(JOBS)})` +
  ` and on (job) count by (job) (${serverByJob()})`

const llmCalls = genAiRate(RATE, LLM_BY, { matchers: JOBS })
const llmFailed = genAiRate(RATE, LLM_BY, { errors: true, matchers: JOBS })
const llmErrorRatio = ratio(`(${llmFailed}) or 0 * (${llmCalls})`, llmCalls)

/** Every metric name a pool or GenAI panel may read: what the Job variable is offered from. */
const APP_SERIES = [...VARIANTS.count.map((v) => v.name), ...GEN_AI_DURATION.map((name) => `${name}_count`)]
const appSeries = (...extra: string[]) => `{${[`__name__=~"${APP_SERIES.join('|')}"`, ...extra].join(', ')}}`

const APP_CHECK_NAMES = APP_CHECKS.map((check) => check.name)

export function appsDashboard(): Dashboard {
  return dashboard({
    uid: 'warden-apps',
    title: 'Warden / Applications',
    description:
      "Applications' own OpenTelemetry pool and GenAI metrics, per job and pool, for apps Warden did not instrument (any language, any spelling the app-* checks of `warden doctor --prometheus` read), next to what PostgreSQL shows of the same application through warden serve: saturation, waits, timeouts, connections held across LLM calls and held idle, LLM errors and latency per model.",
    variables: [
      datasourceVariable(),
      labelVariable(
        'job',
        'Job',
        `label_values(${appSeries()}, job)`,
        "Prometheus job of the applications publishing pool (db_client_connection_*, db_client_connections_*) or GenAI metrics. Keep warden serve's own job selected too: the server-side and check panels read Warden's series, which carry its job.",
      ),
      labelVariable(
        'instance',
        'Instance',
        `label_values(${appSeries('job=~"$job"')}, instance)`,
        "Scrape target (host:port) within the selected jobs; keep warden serve's selected for the server-side panels.",
      ),
      labelVariable(
        'pool',
        'Pool',
        `label_values(db_client_connection_count{job=~"$job", instance=~"$instance"}, db_client_connection_pool_name)`,
        'Client pool (db_client_connection_pool_name; pool_name under the older db_client_connections_* names, whose pools All includes but the list does not offer). The held-idle panels compare whole jobs and ignore it.',
      ),
      ...fleetVariables({ tables: false }),
    ],
    sections: [
      {
        title: 'Now',
        panels: [
          stat({
            title: 'Busiest pool',
            description: `Connections checked out as a share of the pool's max, the highest among the selected pools right now. Red at ${POOL_USED.crit * 100} % (app-pool-saturation's default; WardenAppPoolSaturated fires at ${POOL_USED.alert * 100} % over 10 minutes): the next requests queue. Find the pool below, then see whether it holds connections across LLM calls.`,
            unit: 'percentunit',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: POOL_USED.warn }, { color: 'red', value: POOL_USED.crit }],
            queries: [{ expr: `max(${poolUsedRatio})`, legend: 'busiest' }],
          }),
          stat({
            title: 'Requests waiting for a connection',
            description:
              'connect() calls of the selected pools queued for a connection right now. Above 0 for long, the pool is too small for how long its connections are held: look at use time before raising the max.',
            unit: 'short',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: 1 }, { color: 'red', value: 5 }],
            queries: [{ expr: `sum(${pendingNow(POOLS)}) or on () vector(0)`, legend: 'pending' }],
          }),
          stat({
            title: 'Pool timeouts',
            description:
              'connect() calls per minute that gave up waiting for a connection, all selected pools: users see errors. Any at all makes app-pool-saturation warn, one a minute critical.',
            unit: 'cpm',
            w: 4,
            colorMode: 'background',
            thresholds: [GREEN, { color: 'orange', value: 0.001 }, { color: 'red', value: 1 }],
            queries: [{ expr: `sum(${timeoutsPerMinute(RATE, POOLS)}) or on () vector(0)`, legend: 'timeouts' }],
          }),
          stat({
            title: 'Longest wait p99',
            description: `p99 time from connect() to a connection in hand, the slowest selected pool (app-pool-wait: warning from ${WAIT_P99_SECONDS.warn * 1000} ms, critical from ${WAIT_P99_SECONDS.crit} s by default).`,
            unit: 's',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: WAIT_P99_SECONDS.warn }, { color: 'red', value: WAIT_P99_SECONDS.crit }],
            queries: [{ expr: `max(${timeQuantile('waitTime', 0.99, RATE, POOLS)})`, legend: 'p99' }],
          }),
          stat({
            title: 'Longest use p95',
            description: `p95 time a connection stays checked out, the slowest selected pool. Seconds are an LLM call's scale, not a query's: compare with the LLM call p95 below (app-connection-held-long: warning from ${HELD_P95_SECONDS.warn} s, critical from ${HELD_P95_SECONDS.crit} s; WardenAppConnectionHeldLong at 1 s).`,
            unit: 's',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: HELD_P95_SECONDS.warn }, { color: 'red', value: HELD_P95_SECONDS.crit }],
            queries: [{ expr: `max(${timeQuantile('useTime', 0.95, RATE, POOLS)})`, legend: 'p95' }],
          }),
          stat({
            title: 'LLM error ratio',
            description: `Share of the GenAI operations of the selected jobs that ended with an error (error_type set), all models (app-llm-errors: warning from ${LLM_ERRORS.warn * 100} %, critical from ${LLM_ERRORS.crit * 100} %). Per job and model below.`,
            unit: 'percentunit',
            w: 4,
            colorMode: 'background',
            thresholds: [GREEN, { color: 'yellow', value: LLM_ERRORS.warn }, { color: 'red', value: LLM_ERRORS.crit }],
            queries: [{ expr: `(sum(${llmFailed}) or on () vector(0)) / sum(${llmCalls})`, legend: 'errors' }],
          }),
        ],
      },
      {
        title: 'Application pools (per job and pool)',
        panels: [
          timeseries({
            title: 'Pool used of max',
            description: `Connections each pool has checked out as a share of its max (db_client_connection_max). Pinned near 100 % with requests waiting beside it is post-mortem 1: find out what the connections are held across (use time and held idle below) before raising the max, which only moves the cliff to max_connections. Dashed: ${POOL_USED.alert * 100} %, WardenAppPoolSaturated.`,
            unit: 'percentunit',
            max: 1,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: POOL_USED.alert }],
            queries: [{ expr: poolUsedRatio, legend: POOL_LEGEND }],
          }),
          timeseries({
            title: 'Connections used and max',
            description:
              "Connections each pool has checked out, against its configured max. A pool without a max series (SQLAlchemy's instrumentation exports none) shows its used count only.",
            unit: 'short',
            queries: [
              { expr: usedNow(POOLS), legend: `${POOL_LEGEND} used` },
              { expr: maxNow(POOLS), legend: `${POOL_LEGEND} max` },
            ],
          }),
          timeseries({
            title: 'Requests waiting for a connection',
            description:
              'connect() calls of each pool queued for a connection. Pending throughout a window makes app-pool-saturation critical: the pool is exhausted, and the next thing users see is timeouts.',
            unit: 'short',
            queries: [{ expr: pendingNow(POOLS), legend: POOL_LEGEND }],
          }),
          timeseries({
            title: 'Pool timeouts per minute',
            description:
              'connect() calls per minute that gave up waiting for a connection, per pool: the "connection timed out" errors of post-mortem 1. Fix what holds the connections (use time, held idle); a longer timeout only makes users wait longer for the same error.',
            unit: 'cpm',
            queries: [{ expr: timeoutsPerMinute(RATE, POOLS), legend: POOL_LEGEND }],
          }),
          timeseries({
            title: 'Connection wait p99',
            description: `p99 time from connect() to a connection in hand, per pool, in seconds whatever unit the app exports. Dashed: ${WAIT_P99_SECONDS.crit} s, app-pool-wait's critical default. A wait that grows with traffic while the pool is pinned at its max is a starved pool, not a slow database.`,
            unit: 's',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: WAIT_P99_SECONDS.crit }],
            queries: [{ expr: timeQuantile('waitTime', 0.99, RATE, POOLS), legend: POOL_LEGEND }],
          }),
          timeseries({
            title: 'Connection use p95 and LLM call p95',
            description:
              "How long connections stay checked out (p95 per pool) next to how long the same job's LLM calls take (gen_ai_client_operation_duration p95 per job). Use time at the LLM call's scale, rising and falling with it, is the signature of a connection held across the LLM call: release it before the call and reacquire to write the reply (docs/release-before-call.md). `warden doctor --prometheus` says how much of the held time is LLM time.",
            unit: 's',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: HELD_P95_SECONDS.warn }],
            queries: [
              { expr: timeQuantile('useTime', 0.95, RATE, POOLS), legend: `${POOL_LEGEND} connection use p95` },
              { expr: genAiQuantile(0.95, RATE, 'job', JOBS), legend: '{{job}} LLM call p95' },
            ],
          }),
        ],
      },
      {
        title: "Held idle: the app's pools against PostgreSQL (warden_pg_connections)",
        panels: [
          timeseries({
            title: 'Checked out by the app, idle on the server',
            description:
              'Per job, all its pools: connections the app has checked out (mean over the interval from the use-time histogram where exported, else the used gauge), and the backends PostgreSQL shows idle or idle in transaction for the application_name equal to the job, added up across the selected targets. Used connections that sit idle on the server are held across something else: an LLM call, in a transaction or in autocommit (which idle-in-transaction cannot see). A job whose application_name differs (mapped under apps: for warden doctor) has no server series here: set application_name to the job, or run `warden doctor --prometheus --check app-held-idle`. Several Warden replicas watching one server count its backends once each: select one Warden instance.',
            unit: 'short',
            queries: [
              { expr: usedByJob, legend: '{{job}} checked out (app)' },
              {
                expr: `sum by (job, state) (${serverByJob(IDLE_STATES)}) and on (job) ${usedByJob}`,
                legend: '{{job}} {{state}} (PostgreSQL)',
              },
            ],
          }),
          timeseries({
            title: 'Held idle, share of the pool max',
            description: `Per job: connections checked out minus the job's backends PostgreSQL shows active, as a share of its pools' max, across the selected targets; jobs matched by application_name as on the panel beside. Dashed: ${HELD_IDLE.crit * 100} %, app-held-idle's critical default and WardenAppHeldIdle. Near 0 for an app that releases before its LLM calls.`,
            unit: 'percentunit',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'orange', value: HELD_IDLE.warn }, { color: 'red', value: HELD_IDLE.crit }],
            queries: [{ expr: heldIdleShare, legend: '{{job}}' }],
          }),
        ],
      },
      {
        title: 'LLM calls (gen_ai_client_*)',
        panels: [
          timeseries({
            title: 'LLM error ratio by job and model',
            description: `Share of GenAI operations that ended with an error (error_type set, after the SDK's retries), per job and requested model. Dashed: ${LLM_ERRORS.warn * 100} %, app-llm-errors' warning default. One model failing alone is the provider; every model of one job, that job's path to it (network, keys, quota).`,
            unit: 'percentunit',
            max: 1,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: LLM_ERRORS.warn }],
            queries: [{ expr: llmErrorRatio, legend: '{{job}} {{gen_ai_request_model}}' }],
          }),
          timeseries({
            title: 'LLM call p95 by job and model',
            description:
              'p95 duration of GenAI operations per job and requested model. Every second here that a connection is held through is a second of the pool gone: compare with the connection use p95 above.',
            unit: 's',
            queries: [{ expr: genAiQuantile(0.95, RATE, LLM_BY, JOBS), legend: '{{job}} {{gen_ai_request_model}}' }],
          }),
          timeseries({
            title: 'LLM calls per minute by job and model',
            description: 'GenAI operations per minute, successful or not, per job and requested model: the traffic behind the ratios.',
            unit: 'cpm',
            queries: [{ expr: `60 * (${llmCalls})`, legend: '{{job}} {{gen_ai_request_model}}' }],
          }),
          timeseries({
            title: 'Tokens per minute by job and model',
            description:
              'Tokens per minute from gen_ai_client_token_usage, per job, model and token type (input, output). Jobs whose instrumentation records no token usage have no series.',
            unit: 'short',
            queries: [
              {
                expr: `60 * sum by (job, gen_ai_request_model, gen_ai_token_type) (rate(${sel('gen_ai_client_token_usage_sum')}[${RATE}]))`,
                legend: '{{job}} {{gen_ai_request_model}} {{gen_ai_token_type}}',
              },
            ],
          }),
        ],
      },
      {
        title: 'Checks',
        panels: checkTiles(`check=~"${APP_CHECK_NAMES.join('|')}"`, {
          statusTitle: 'Application checks',
          statusDescription: `Last verdict of the app-* checks (${APP_CHECK_NAMES.join(', ')}) that warden serve runs with prometheus.url configured (target "prometheus"): ok, warning or critical, over prometheus.window. \`warden doctor --prometheus <url> --check <name> -v\` names the pool and gives the PromQL and figures. No data: warden serve has no prometheus.url, or Target is narrowed to databases.`,
          successTitle: 'Application checks that could not run',
          successDescription:
            'Whether the last run of each app-* check could query Prometheus (1) or failed, e.g. unreachable or a refused query (0). A failed check keeps its last verdict.',
        }),
      },
    ],
  })
}
