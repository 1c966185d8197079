import { formatDuration } from '../core/duration.js'
import { avgOver, maxNow, maxOver, minOver, pendingNow, timeoutsPerMinute, useSecondsRate, usedNow } from '../prometheus/app-metrics.js'
import { byPool, describePool, lookup, round, runQueries } from './app-common.js'
import { grade, type AppCheck, type Severity } from './types.js'

const RANK: Record<Severity, number> = { ok: 0, warn: 1, crit: 2 }

/**
 * Post-mortem 1 seen from the application: a pool whose connections are all checked out for the
 * whole window, with requests queueing behind it and timing out. Average used / max over the
 * window (not one scrape's peak), the smallest pending count seen (above zero: queued throughout)
 * and connect timeouts per minute, per pool. Where the pool exports the use-time histogram, the
 * average comes from it (Little's law: connection-seconds used per second is the mean number
 * checked out), because instrumentation-pg's used count lags a release by one connection.
 */
export const appPoolSaturation: AppCheck = {
  name: 'app-pool-saturation',
  help: "Applications' own pool metrics (db_client_connection_count / _max / _pending_requests / _timeouts, OpenTelemetry semantic conventions) from Prometheus: average used / max per pool over the window, requests pending throughout, timeouts per minute.",
  async run({ prom, windowSeconds: w, checks }) {
    const { results, evidence } = await runQueries(prom, {
      usedAvg: avgOver(usedNow(), w),
      usedAvgFromUseTime: useSecondsRate(w),
      usedPeak: maxOver(usedNow(), w),
      max: maxOver(maxNow(), w),
      pendingMin: minOver(pendingNow(), w),
      pendingAvg: avgOver(pendingNow(), w),
      timeoutsPerMinute: timeoutsPerMinute(w),
    })
    const used = byPool(results.usedAvg)
    if (used.size === 0) {
      return {
        status: 'skipped',
        message: `no job in Prometheus ${prom.shownUrl} exports db_client_connection_count{db_client_connection_state="used"} (or the older db_client_connections_usage) over the last ${formatDuration(w)}`,
        evidence: [evidence],
      }
    }
    const peak = byPool(results.usedPeak)
    const max = byPool(results.max)
    const pendingMin = byPool(results.pendingMin)
    const pendingAvg = byPool(results.pendingAvg)
    const timeouts = byPool(results.timeoutsPerMinute)
    const fromUseTime = byPool(results.usedAvgFromUseTime)
    const rows = [...used.values()].map(({ key, value: gauge }) => {
      const littles = lookup(fromUseTime, key)
      const value = littles ?? gauge
      const poolMax = lookup(max, key)
      const percent = poolMax ? (value / poolMax) * 100 : undefined
      const row = {
        ...key,
        usedAvg: round(value),
        usedAvgFrom: littles === undefined ? 'db_client_connection_count' : 'db_client_connection_use_time',
        usedAvgGauge: round(gauge),
        usedPeak: lookup(peak, key) ?? null,
        max: poolMax ?? null,
        usedPercent: percent === undefined ? null : round(percent, 1),
        pendingMin: lookup(pendingMin, key) ?? null,
        pendingAvg: round(lookup(pendingAvg, key) ?? 0),
        timeoutsPerMinute: round(lookup(timeouts, key) ?? 0),
      }
      const severities: Severity[] = [percent === undefined ? 'ok' : grade(percent, checks.appPoolUsed)]
      if ((row.pendingMin ?? 0) > 0) severities.push('crit')
      else if (row.pendingAvg >= 1) severities.push('warn')
      if (row.timeoutsPerMinute >= 1) severities.push('crit')
      else if (row.timeoutsPerMinute > 0) severities.push('warn')
      const status = severities.reduce((a, b) => (RANK[b] > RANK[a] ? b : a), 'ok')
      return { status, ...row }
    })
    rows.sort((a, b) => RANK[b.status] - RANK[a.status] || (b.usedPercent ?? 0) - (a.usedPercent ?? 0))
    const describe = (row: (typeof rows)[number]) =>
      `${describePool(row)}: ${row.usedPercent === null ? `${row.usedAvg} connections used on average (no db_client_connection_max)` : `${row.usedPercent}% of ${row.max} connections used on average`} over ${formatDuration(w)} (peak ${row.usedPeak ?? '?'})` +
      `${(row.pendingMin ?? 0) > 0 ? `, at least ${row.pendingMin} request(s) pending throughout` : row.pendingAvg > 0 ? `, ${row.pendingAvg} pending on average` : ''}` +
      `${row.timeoutsPerMinute > 0 ? `, ${row.timeoutsPerMinute} connect timeout(s)/min` : ''}`
    const bad = rows.filter((row) => row.status !== 'ok')
    const status = rows[0]!.status
    const message = bad.length
      ? `${bad.length} of ${rows.length} application pool(s) saturated: ${bad.map(describe).join('; ')}`
      : `${rows.length} application pool(s) with headroom; busiest: ${describe(rows[0]!)}`
    return { status, message, evidence: [...rows, evidence] }
  },
}
