import {
  checkTiles,
  GREEN,
  dashboard,
  fleetVariables,
  sel,
  standardVariables,
  stat,
  TABLE,
  TARGET,
  timeseries,
  type Dashboard,
} from '../model.js'

/** collectors that run at most once a minute (or every 15 s) on purpose: their age is not staleness */
const SLOW_BY_DESIGN = 'collector!~"checks|app_checks"'

const RATE = '[$__rate_interval]'
/** A session series of the selected targets and tables. */
const session = (metric: string, ...extra: string[]) => sel(metric, TARGET, TABLE, ...extra)
/** Per table: two targets or two tables are never added into one line. */
const BY_TABLE = 'target, table'
const TABLE_LEGEND = '{{target}}/{{table}}'

/** The checks of `warden doctor` that look at the session table; the pool dashboard shows the others. */
export const SESSION_CHECKS = ['orphaned-sessions', 'duplicate-open-sessions', 'orphan-index', 'dangling-cost-rows']
const sessionChecks = `check=~"${SESSION_CHECKS.join('|')}"`

/** The post-mortem's alert: more than 5 orphans (prometheus/alerts.yml, WardenOrphanedSessions). */
const ORPHAN_ALERT = 5
/** WardenSweepNotSucceeding: three default sweep intervals. */
const SWEEP_STALE_SECONDS = 900

export function sessionsDashboard(): Dashboard {
  return dashboard({
    uid: 'warden-sessions',
    title: 'Warden / Sessions',
    description:
      'Open and orphaned sessions of the session tables of every target (database), closes by reason, orphan sweeps and the session checks of warden doctor; per target and table.',
    variables: [...standardVariables('warden_sessions_active'), ...fleetVariables({ tables: true })],
    sections: [
      {
        title: 'Now',
        panels: [
          stat({
            title: 'Open sessions',
            description:
              'Sessions still open (active, or endedAt NULL), all groups, all selected targets and tables added up (the graphs below split them). Refreshed every server.collectInterval.',
            unit: 'short',
            queries: [{ expr: `sum(${session('warden_sessions_active')})`, legend: 'open' }],
          }),
          stat({
            title: 'Orphaned sessions',
            description: `Open sessions silent (last seen, else started) for longer than the table's orphanAfter, one tile per target and table. Red above ${ORPHAN_ALERT}: the WardenOrphanedSessions alert, which fires per table. A sweep with sweepApply closes them.`,
            unit: 'short',
            colorMode: 'background',
            showNames: true,
            thresholds: [GREEN, { color: 'yellow', value: 1 }, { color: 'red', value: ORPHAN_ALERT + 1 }],
            queries: [{ expr: `sum by (${BY_TABLE}) (${session('warden_sessions_orphaned')})`, legend: TABLE_LEGEND }],
          }),
          stat({
            title: 'Oldest open session',
            description:
              'Age (now - startedAt) of the oldest session that is still open, any group, in any of the selected targets and tables (the graph below names the table). Days here usually mean a disconnect path that never closes its row.',
            unit: 's',
            thresholds: [GREEN, { color: 'yellow', value: 86_400 }],
            queries: [{ expr: `max(${session('warden_sessions_oldest_active_age_seconds')})`, legend: 'oldest' }],
          }),
          stat({
            title: 'Since the last successful sweep',
            description:
              'Sweeps run per table: the time since the last ok sweep of the selected table that has waited longest (any selected instance of its job may have run it). Decades mean none has succeeded since the service started (the gauge starts at 0). Red past 15 minutes, the WardenSweepNotSucceeding threshold.',
            unit: 's',
            colorMode: 'background',
            thresholds: [GREEN, { color: 'red', value: SWEEP_STALE_SECONDS }],
            queries: [
              {
                expr: `max(time() - max by (job, ${BY_TABLE}) (${session('warden_sweep_last_success_timestamp_seconds')}))`,
                legend: 'since last success',
              },
            ],
          }),
        ],
      },
      {
        title: 'Targets',
        panels: [
          timeseries({
            title: 'Targets up',
            description:
              'Whether the last collection round of each target (database) reached it. A target at 0 keeps its last values: see the age panel beside this one.',
            unit: 'short',
            w: 12,
            max: 1,
            queries: [{ expr: `min by (target) (${sel('warden_target_up', TARGET)})`, legend: '{{target}}' }],
          }),
          timeseries({
            title: 'Age of the gauges at scrape',
            description:
              "Seconds since each target's scrape-refreshed collectors (sessions, connections, activity checks) last succeeded, the oldest of them, at scrape time: about server.freshFor while the database answers quickly; growing while it is down, slow or a table is locked. The other checks run once a minute by design and are left out.",
            unit: 's',
            w: 12,
            queries: [
              {
                expr: `max by (target) (${sel('warden_collector_age_seconds', TARGET, SLOW_BY_DESIGN)} < +Inf)`,
                legend: '{{target}}',
              },
            ],
          }),
        ],
      },
      {
        title: 'Sessions by group',
        panels: [
          timeseries({
            title: 'Open sessions by group',
            description:
              'Open sessions by the mapped group column (e.g. agent_role). Groups beyond the 50 largest are folded into "(other)"; no group column gives "(none)".',
            unit: 'short',
            w: 8,
            stack: true,
            queries: [{ expr: `sum by (${BY_TABLE}, group) (${session('warden_sessions_active')})`, legend: `${TABLE_LEGEND} {{group}}` }],
          }),
          timeseries({
            title: 'Orphaned sessions by group',
            description: `Open sessions silent past the table's orphanAfter, by table and group, and each table's total. The dashed line is the alert level (more than ${ORPHAN_ALERT} in one table for 10 minutes).`,
            unit: 'short',
            w: 8,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: ORPHAN_ALERT }],
            queries: [
              { expr: `sum by (${BY_TABLE}, group) (${session('warden_sessions_orphaned')})`, legend: `${TABLE_LEGEND} {{group}}` },
              { expr: `sum by (${BY_TABLE}) (${session('warden_sessions_orphaned')})`, legend: `${TABLE_LEGEND} total` },
            ],
          }),
          timeseries({
            title: 'Oldest open session by group',
            description:
              'Age (now - startedAt) of the oldest open session of each table and group when last collected. A line that only grows is a session nobody closes.',
            unit: 's',
            w: 8,
            queries: [
              {
                expr: `max by (${BY_TABLE}, group) (${session('warden_sessions_oldest_active_age_seconds')})`,
                legend: `${TABLE_LEGEND} {{group}}`,
              },
            ],
          }),
        ],
      },
      {
        title: 'Closes',
        panels: [
          timeseries({
            title: 'Sessions closed by reason',
            description:
              'Sessions closed per minute by this Warden process: orphan_sweep (scheduled or API sweeps), bulk_close (sessions close / POST /api/sessions/close), shutdown and disconnect (the reference chat path). Closes your application makes itself are not counted here.',
            unit: 'cpm',
            stack: true,
            queries: [
              {
                expr: `60 * sum by (${BY_TABLE}, reason) (rate(${session('warden_sessions_closed_total')}${RATE}))`,
                legend: `${TABLE_LEGEND} {{reason}}`,
              },
            ],
          }),
          timeseries({
            title: 'Sessions closed per day',
            description:
              "Closes per day by reason over the last 7 days. There is no per-day metric: this is the increase of warden_sessions_closed_total over one-day steps (the panel's minimum interval is 1d, so $__rate_interval is one day plus one scrape interval). It counts closes made by Warden only, and there is no average-duration metric: per-day totals and average session duration come from `warden sessions stats` or GET /api/sessions/stats, which read the table itself.",
            unit: 'short',
            bars: true,
            interval: '1d',
            timeFrom: '7d',
            queries: [
              {
                expr: `sum by (${BY_TABLE}, reason) (increase(${session('warden_sessions_closed_total')}${RATE}))`,
                legend: `${TABLE_LEGEND} {{reason}}`,
              },
            ],
          }),
        ],
      },
      {
        title: 'Sweeps',
        panels: [
          timeseries({
            title: 'Sweep runs by result',
            description:
              'Orphan sweeps per minute by result: ok (a dry run or an applied sweep that finished), locked (another sweep or close held the table: the next slot retries), error. With several replicas each slot runs on one of them.',
            unit: 'cpm',
            w: 8,
            stack: true,
            queries: [
              {
                expr: `60 * sum by (${BY_TABLE}, result) (rate(${session('warden_sweep_runs_total')}${RATE}))`,
                legend: `${TABLE_LEGEND} {{result}}`,
              },
            ],
          }),
          timeseries({
            title: 'Sweep duration',
            description:
              'p50, p95 and p99 duration of the sweeps of each table that ran (ok or error) in each interval, from warden_sweep_duration_seconds. Empty between sweeps when the interval is shorter than the sweep schedule.',
            unit: 's',
            w: 8,
            queries: [0.5, 0.95, 0.99].map((q) => ({
              expr: `histogram_quantile(${q}, sum by (le, ${BY_TABLE}) (rate(${session('warden_sweep_duration_seconds_bucket')}${RATE})))`,
              legend: `${TABLE_LEGEND} p${Math.round(q * 100)}`,
            })),
          }),
          timeseries({
            title: 'Time since the last successful sweep',
            description: `Seconds since the freshest successful sweep of each table among the selected instances of its job: replicas share the schedule, so one of them succeeding is enough. Dashed line: ${SWEEP_STALE_SECONDS / 60} minutes, the WardenSweepNotSucceeding threshold (per table).`,
            unit: 's',
            w: 8,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: SWEEP_STALE_SECONDS }],
            queries: [
              {
                expr: `time() - max by (job, ${BY_TABLE}) (${session('warden_sweep_last_success_timestamp_seconds')})`,
                legend: `{{job}} ${TABLE_LEGEND}`,
              },
            ],
          }),
        ],
      },
      {
        title: 'Checks',
        panels: [
          ...checkTiles(sessionChecks, {
            statusTitle: 'Session checks',
            statusDescription: `Last verdict of the session checks of warden doctor (${SESSION_CHECKS.join(', ')}) per target: ok, warning or critical, the worst of the target's tables. A check that does not apply (e.g. dangling-cost-rows without checks.costRows) has no tile. Run \`warden doctor\` for the details.`,
            successTitle: 'Session checks that could not run',
            successDescription:
              'Whether the last run of each session check could run (1) or failed, e.g. on a timeout (0). A failed check keeps its last verdict in the tiles beside this one.',
          }),
        ],
      },
    ],
  })
}
