import type { CloseReport } from '../sessions/close-sessions.js'
import { age, byGroupLine, table, timestamp } from './render.js'

/** The human view of a sweep or bulk close; --json prints the report object itself. */
export function renderCloseReport(report: CloseReport, noun: string): string {
  const lines: string[] = []
  if (report.dryRun) {
    lines.push(`DRY RUN: ${report.matched} ${noun} would be closed (${byGroupLine(report.byGroup)})`)
    if (report.oldestSilentSeconds !== null) lines.push(`most silent: ${age(report.oldestSilentSeconds)} without activity`)
  } else {
    lines.push(
      `closed ${report.closed} of ${report.matched} ${noun} in ${report.batches} batch(es), ${Math.round(report.durationMs)} ms (longest batch ${Math.round(report.maxBatchMs)} ms)`,
    )
    lines.push(batchingLine(report))
    lines.push(`by group: ${byGroupLine(report.byGroup)}`)
    if (report.stoppedEarly === 'max-rows') lines.push(`stopped at --max-rows; ${report.remaining ?? 0} still open: run again to continue`)
    if (report.stoppedEarly === 'signal') lines.push(`stopped by a signal after the batch in flight; ${report.remaining ?? 0} still open`)
  }
  if (report.sample.length > 0) {
    lines.push('', report.dryRun ? 'sample (most silent first):' : 'sample of what matched (most silent first):')
    lines.push(
      table(report.sample, [
        { header: 'id', value: (r) => r.id },
        { header: 'group', value: (r) => r.group },
        { header: 'started', value: (r) => timestamp(r.startedAt) },
        { header: 'silent for', value: (r) => age(r.silentSeconds), align: 'right' },
      ]),
    )
  }
  for (const warning of report.warnings) lines.push(`warning: ${warning}`)
  if (report.auditId) lines.push(`audit row ${report.auditId}`)
  if (report.dryRun && report.matched > 0) lines.push('', 'nothing was changed; add --apply to close them')
  return lines.join('\n')
}

/** One line on how the batches were sized, so a slow or long sweep can be told apart from a small fixed --batch-size. */
function batchingLine(report: CloseReport): string {
  const { batching } = report
  const how =
    batching.mode === 'fixed'
      ? `fixed at ${batching.batchSize} rows (--batch-size / sweep.batchSize)`
      : `adaptive toward ${Math.round(batching.targetMs)} ms each (sweep.batchTarget)`
  return `batches: ${how}; largest ${report.maxBatchSize} rows, longest ${Math.round(report.maxBatchMs)} ms`
}
