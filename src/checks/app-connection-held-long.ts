import { formatDuration } from '../core/duration.js'
import { genAiQuantile, genAiSecondsRate, timeQuantile, useSecondsRate } from '../prometheus/app-metrics.js'
import { byPool, describePool, round, runQueries, seconds } from './app-common.js'
import { grade, type AppCheck } from './types.js'

/** Per job: how the time connections stay checked out compares with the time spent in LLM calls. */
function llmCorrelation(values: { useP95: number; useSecondsRate?: number; llmP95?: number; llmSecondsRate?: number }): {
  llmP95Seconds: number | null
  llmShareOfHeldTime: number | null
  heldAcrossLlmCalls: boolean
} {
  const { useP95, useSecondsRate, llmP95, llmSecondsRate } = values
  if (llmP95 === undefined) return { llmP95Seconds: null, llmShareOfHeldTime: null, heldAcrossLlmCalls: false }
  // LLM seconds per connection-held second: near 1 when every call happens inside a checkout
  const share = useSecondsRate && llmSecondsRate !== undefined ? llmSecondsRate / useSecondsRate : undefined
  const heldAcross = useP95 >= 0.5 * llmP95 && share !== undefined && share >= 0.5 && share <= 1.5
  return { llmP95Seconds: round(llmP95, 4), llmShareOfHeldTime: share === undefined ? null : round(share), heldAcrossLlmCalls: heldAcross }
}

/**
 * A connection checked out for seconds is held across something that is not the database. Where
 * the same job exports gen_ai_client_operation_duration, the check compares the two: LLM seconds
 * per connection-held second near 1 and use time at the LLM call's scale is the signature of
 * holding a connection across LLM calls.
 */
export const appConnectionHeldLong: AppCheck = {
  name: 'app-connection-held-long',
  help: 'p95 time a connection stays checked out of an application pool (db_client_connection_use_time histogram), in seconds, per pool over the window; compared with gen_ai_client_operation_duration when the same job exports it.',
  async run({ prom, windowSeconds: w, checks }) {
    const { results, evidence } = await runQueries(prom, {
      useP95: timeQuantile('useTime', 0.95, w),
      useSecondsRate: useSecondsRate(w),
      llmP95: genAiQuantile(0.95, w, 'job'),
      llmSecondsRate: genAiSecondsRate(w),
    })
    if (results.useP95.length === 0) {
      return {
        status: 'skipped',
        message: `no job in Prometheus ${prom.shownUrl} exports a db_client_connection_use_time histogram (_seconds_bucket, _bucket, or the older db_client_connections_use_time in ms) over the last ${formatDuration(w)}`,
        evidence: [evidence],
      }
    }
    const useRate = byPool(results.useSecondsRate)
    const perJob = (samples: typeof results.llmP95) =>
      new Map(samples.filter((s) => Number.isFinite(s.value)).map((s) => [s.metric.job ?? '', s.value]))
    const llmP95 = perJob(results.llmP95)
    const llmRate = perJob(results.llmSecondsRate)
    // connection-held seconds per job (all its pools): LLM calls are counted per job, not per pool
    const jobUse = new Map<string, number>()
    for (const { key, value } of useRate.values()) jobUse.set(key.job, (jobUse.get(key.job) ?? 0) + value)
    const rows = [...byPool(results.useP95).values()]
      .map(({ key, value }) => ({
        status: grade(value, checks.appHeldP95),
        ...key,
        useP95Seconds: round(value, 4),
        ...llmCorrelation({
          useP95: value,
          useSecondsRate: jobUse.get(key.job),
          llmP95: llmP95.get(key.job),
          llmSecondsRate: llmRate.get(key.job),
        }),
      }))
      .sort((a, b) => b.useP95Seconds - a.useP95Seconds)
    if (rows.length === 0)
      return { status: 'ok', message: `no connection was checked out in the last ${formatDuration(w)}`, evidence: [evidence] }
    const describe = (row: (typeof rows)[number]) =>
      `${describePool(row)} keeps connections ${seconds(row.useP95Seconds)} at p95` +
      (row.llmP95Seconds === null
        ? ''
        : row.heldAcrossLlmCalls
          ? ` — held across LLM calls: the job's LLM calls take ${seconds(row.llmP95Seconds)} at p95 and LLM time is ${Math.round((row.llmShareOfHeldTime ?? 0) * 100)}% of connection-held time`
          : ` (the job's LLM calls: ${seconds(row.llmP95Seconds)} at p95${row.llmShareOfHeldTime === null ? '' : `, ${Math.round(row.llmShareOfHeldTime * 100)}% of connection-held time`}: not held across them)`)
    const bad = rows.filter((row) => row.status !== 'ok')
    return {
      status: rows.reduce(
        (worst, row) => (row.status === 'crit' || (row.status === 'warn' && worst === 'ok') ? row.status : worst),
        'ok' as 'ok' | 'warn' | 'crit',
      ),
      message: bad.length
        ? `${bad.length} application pool(s) hold connections for seconds: ${bad.map(describe).join('; ')} (over ${formatDuration(w)})`
        : `${rows.length} application pool(s) return connections promptly; longest: ${describe(rows[0]!)} (over ${formatDuration(w)})`,
      evidence: [...rows, evidence],
    }
  },
}
