import { formatDuration } from '../core/duration.js'
import { genAiQuantile, genAiRate, range } from '../prometheus/app-metrics.js'
import { round, runQueries, seconds } from './app-common.js'
import { grade, type AppCheck, type Severity } from './types.js'

const BY = 'job, gen_ai_request_model'
const RANK: Record<Severity, number> = { ok: 0, warn: 1, crit: 2 }

/**
 * GenAI operations that failed (error_type set, as the OpenTelemetry GenAI conventions record
 * it) per job and model, with the p95 latency; attempt-level failures where the job exports
 * warden_llm_attempts_total (retries the operation hid).
 */
export const appLlmErrors: AppCheck = {
  name: 'app-llm-errors',
  help: 'Share of GenAI client operations that failed (gen_ai_client_operation_duration with error_type) and their p95 latency, per job and model over the window; failed attempts where exported.',
  async run({ prom, windowSeconds: w, checks }) {
    const attempts = (errors: boolean) => `sum by (${BY}) (rate(warden_llm_attempts_total${errors ? '{error_type!=""}' : ''}[${range(w)}]))`
    const { results, evidence } = await runQueries(prom, {
      operations: genAiRate(w, BY),
      failed: genAiRate(w, BY, { errors: true }),
      p95: genAiQuantile(0.95, w, BY),
      attempts: attempts(false),
      failedAttempts: attempts(true),
    })
    if (results.operations.length === 0) {
      return {
        status: 'skipped',
        message: `no job in Prometheus ${prom.shownUrl} exports gen_ai_client_operation_duration (_seconds or unit-less) over the last ${formatDuration(w)}`,
        evidence: [evidence],
      }
    }
    const key = (m: Record<string, string>) => `${m.job ?? ''}\u0000${m.gen_ai_request_model ?? ''}`
    const index = (samples: typeof results.operations) => new Map(samples.map((s) => [key(s.metric), s.value]))
    const failed = index(results.failed)
    const p95 = index(results.p95)
    const attemptsAll = index(results.attempts)
    const attemptsFailed = index(results.failedAttempts)
    const rows = results.operations
      .filter((s) => s.value > 0)
      .map((s) => {
        const k = key(s.metric)
        const errorPercent = ((failed.get(k) ?? 0) / s.value) * 100
        const attempted = attemptsAll.get(k)
        const latency = p95.get(k)
        return {
          status: grade(errorPercent, checks.appLlmErrors),
          job: s.metric.job ?? '',
          model: s.metric.gen_ai_request_model ?? '',
          operationsPerMinute: round(s.value * 60),
          errorPercent: round(errorPercent, 1),
          p95Seconds: latency !== undefined && Number.isFinite(latency) ? round(latency, 3) : null,
          attemptErrorPercent: attempted ? round(((attemptsFailed.get(k) ?? 0) / attempted) * 100, 1) : null,
        }
      })
      .sort((a, b) => RANK[b.status] - RANK[a.status] || b.errorPercent - a.errorPercent)
    if (rows.length === 0) return { status: 'ok', message: `no GenAI operation in the last ${formatDuration(w)}`, evidence: [evidence] }
    const describe = (row: (typeof rows)[number]) =>
      `job ${JSON.stringify(row.job)} model ${JSON.stringify(row.model)}: ${row.errorPercent}% of ${row.operationsPerMinute} operations/min failed` +
      `${row.attemptErrorPercent === null ? '' : ` (${row.attemptErrorPercent}% of attempts)`}, p95 ${row.p95Seconds === null ? '?' : seconds(row.p95Seconds)}`
    const bad = rows.filter((row) => row.status !== 'ok')
    return {
      status: rows[0]!.status,
      message: bad.length
        ? `${bad.length} job/model pair(s) with failing LLM calls: ${bad.map(describe).join('; ')} (over ${formatDuration(w)})`
        : `${rows.length} job/model pair(s); most errors: ${describe(rows[0]!)} (over ${formatDuration(w)})`,
      evidence: [...rows, evidence],
    }
  },
}
