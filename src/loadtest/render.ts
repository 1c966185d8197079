import type { DriveSnapshot } from './drive.js'
import type { PatternResult } from './run.js'

const fmt = (v: number | null | undefined, digits = 0, unit = '') => (v === null || v === undefined ? '-' : `${v.toFixed(digits)}${unit}`)

const errorText = (errors: Record<string, number>) =>
  Object.entries(errors)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ') || 'none'

/** The patterns side by side, one column each, then one line of reading per pattern. */
export function renderLoadtest(results: PatternResult[]): string {
  if (results.length === 0) return 'no pattern ran'
  const first = results[0]!
  const limit = first.concurrency / (first.llmLatencyMs / 1000)
  const rows: Array<[string, (r: PatternResult) => string]> = [
    ['throughput (turns/s)', (r) => fmt(r.throughput, 1)],
    ["of Little's-law limit", (r) => fmt(r.littleLawRatio * 100, 1, ' %')],
    ['latency p50 / p95 / p99 (ms)', (r) => `${fmt(r.latencyMs.p50)} / ${fmt(r.latencyMs.p95)} / ${fmt(r.latencyMs.p99)}`],
    ['successful turns', (r) => String(r.successes)],
    ['llm_requests rows (ok / error)', (r) => `${r.llmRequestsRows ?? '-'} / ${r.llmErrorRows ?? '-'}`],
    ['errors', (r) => errorText(r.errors)],
    ['pool wait p99 (ms)', (r) => fmt(r.poolWaitP99Ms, 1)],
    ['pool timeouts', (r) => fmt(r.poolTimeouts)],
    ['held during LLM call', (r) => fmt(r.heldDuringLlmCalls)],
    ['max server connections', (r) => (r.maxServerConnections === null ? '-' : `${r.maxServerConnections} (pool max ${r.poolMax})`)],
    ['chat server loop busy', (r) => fmt(r.serverEventLoopUtilization === null ? null : r.serverEventLoopUtilization * 100, 0, ' %')],
    [
      'CPU ms/turn server/PG/users/mock',
      (r) =>
        [r.cpuMsPerTurn.chatServer, r.cpuMsPerTurn.postgres, r.cpuMsPerTurn.loadGenerator, r.cpuMsPerTurn.mockLlm]
          .map((v) => fmt(v, 1))
          .join(' / '),
    ],
  ]
  const label = Math.max(...rows.map(([name]) => name.length)) + 2
  const cells = results.map((r) => [r.pattern, ...rows.map(([, cell]) => cell(r))])
  const widths = cells.map((column) => Math.max(...column.map((c) => c.length)) + 2)
  const line = (name: string, i: number) =>
    name.padEnd(label) +
    cells
      .map((column, c) => column[i]!.padEnd(widths[c]!))
      .join('')
      .trimEnd()
  const header = [
    `${first.concurrency} virtual users, LLM call ${first.llmLatencyMs} ms${first.stream ? ' (streaming)' : ''}, pool max ${first.poolMax}, ${Math.round(first.windowMs / 1000)} s measured` +
      ` — Little's-law limit ${fmt(limit, 1)} turns/s (concurrency / LLM latency)`,
    '',
    line('', 0),
    ...rows.map(([name], i) => line(name, i + 1)),
    '',
  ]
  const reading = results.map((r) => {
    const mismatch =
      r.llmRequestsRows !== null && r.llmRequestsRows !== r.successes
        ? `; ${r.llmRequestsRows} ok cost rows for ${r.successes} replies: check billing`
        : ''
    return `${r.pattern}: ${fmt(r.littleLawRatio * 100, 0)} % of the limit${r.poolTimeouts ? `, ${r.poolTimeouts} pool timeouts` : ''}${r.heldDuringLlmCalls ? `, ${r.heldDuringLlmCalls} LLM calls made while holding a connection` : ''}${mismatch}${r.interrupted ? ' (interrupted)' : ''}`
  })
  return [...header, ...reading].join('\n')
}

export function renderProgress(pattern: string, s: DriveSnapshot): string {
  return `${pattern}: ${Math.round(s.elapsedMs / 1000)} s, ${s.successes} turns ok, ${s.errors} errors, ${s.inFlight} in flight`
}
