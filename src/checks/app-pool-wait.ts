import { formatDuration } from '../core/duration.js'
import { timeQuantile } from '../prometheus/app-metrics.js'
import { byPool, describePool, round, runQueries, seconds } from './app-common.js'
import { grade, type AppCheck } from './types.js'

/** How long an application's requests wait for a pooled connection: the user-facing cost of a starved pool. */
export const appPoolWait: AppCheck = {
  name: 'app-pool-wait',
  help: 'p99 time an application waits for a pooled connection (db_client_connection_wait_time histogram, any spelling) per pool over the window, from Prometheus.',
  async run({ prom, windowSeconds: w, checks }) {
    const { results, evidence } = await runQueries(prom, { waitP99: timeQuantile('waitTime', 0.99, w) })
    if (results.waitP99.length === 0) {
      return {
        status: 'skipped',
        message: `no job in Prometheus ${prom.shownUrl} exports a db_client_connection_wait_time histogram (_seconds_bucket, _bucket, or the older db_client_connections_wait_time in ms) over the last ${formatDuration(w)}`,
        evidence: [evidence],
      }
    }
    const rows = [...byPool(results.waitP99).values()]
      .map(({ key, value }) => ({ status: grade(value, checks.appPoolWaitP99), ...key, waitP99Seconds: round(value, 4) }))
      .sort((a, b) => b.waitP99Seconds - a.waitP99Seconds)
    if (rows.length === 0)
      return { status: 'ok', message: `no connection was requested in the last ${formatDuration(w)}`, evidence: [evidence] }
    const worst = rows[0]!
    const bad = rows.filter((row) => row.status !== 'ok')
    const describe = (row: (typeof rows)[number]) => `${describePool(row)} waits ${seconds(row.waitP99Seconds)} at p99`
    return {
      status: worst.status,
      message: bad.length
        ? `${bad.length} application pool(s) make requests wait for a connection: ${bad.map(describe).join('; ')} (over ${formatDuration(w)})`
        : `${rows.length} application pool(s); longest wait: ${describe(worst)} (over ${formatDuration(w)})`,
      evidence: [...rows, evidence],
    }
  },
}
