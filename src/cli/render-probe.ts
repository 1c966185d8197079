import { age, table, timestamp, type Column } from './render.js'
import type { AcquireProbe } from '../probes/acquire-probe.js'
import type { PgBouncerProbe } from '../probes/pgbouncer-probe.js'
import type { PoolProbe } from '../probes/pool-probe.js'
import type { ServerProbe, TimeoutSetting } from '../probes/server-probe.js'

/**
 * Human form of a pool probe, shared by `pool probe` and `pool watch`. Every line fits `width`
 * columns: tables give the query text whatever the other columns leave, prose wraps.
 */
export interface RenderOptions {
  width?: number
  /** rows per list before "… n more" (all of them are in --json) */
  maxRows?: number
}

interface FitColumn<Row> extends Column<Row> {
  /** cap for this column's cells */
  max?: number
  /** takes the width left over (one per table) */
  flex?: boolean
}

const clip = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`)
const oneLine = (text: string | null | undefined) => (text ?? '').replace(/\s+/g, ' ').trim()
const STATE_LABELS: Record<string, string> = {
  'idle in transaction': 'idle in xact',
  'idle in transaction (aborted)': 'idle in xact, aborted',
}
const stateLabel = (state: string | null) => (state === null ? 'hidden' : (STATE_LABELS[state] ?? state))

function fit<Row>(rows: Row[], columns: FitColumn<Row>[], width: number): string {
  const raw = rows.map((row) => columns.map((c) => oneLine(String(c.value(row) ?? '-'))))
  const widths = columns.map((c, i) => Math.max(c.header.length, ...raw.map((r) => Math.min(r[i]!.length, c.max ?? Infinity))))
  const flexIndex = columns.findIndex((c) => c.flex)
  if (flexIndex >= 0) {
    const others = widths.reduce((sum, w, i) => (i === flexIndex ? sum : sum + w), 0) + 2 * (columns.length - 1)
    widths[flexIndex] = Math.max(columns[flexIndex]!.header.length, width - others)
  }
  const cells = raw.map((r) => r.map((cell, i) => clip(cell, widths[i]!)))
  return table(
    cells.map((_, i) => i),
    columns.map((c, i) => ({ header: c.header, align: c.align, value: (rowIndex: number) => cells[rowIndex]![i] })),
  )
}

function wrap(text: string, width: number, indent = '  '): string[] {
  const lines: string[] = []
  let line = ''
  // Split on single spaces so aligned labels ("slots    12") keep their padding.
  for (const word of text.split(' ')) {
    const next = line ? `${line} ${word}` : word
    if (next.length > width && line) {
      lines.push(line)
      line = `${indent}${word}`
    } else line = next
  }
  if (line) lines.push(line)
  return lines.map((l) => clip(l, width))
}

function capped<Row>(rows: Row[], maxRows: number, render: (rows: Row[]) => string): string[] {
  const shown = render(rows.slice(0, maxRows))
  return rows.length > maxRows ? [shown, `… ${rows.length - maxRows} more (see --json)`] : [shown]
}

const ms = (value: number | null) => (value === null ? '-' : value < 10 ? `${value.toFixed(1)}ms` : age(value / 1000))

function acquireLine(acquire: AcquireProbe): string {
  if (acquire.outcome === 'ok') return `acquire  ok: session in ${ms(acquire.connectMs)}, SELECT 1 in ${ms(acquire.queryMs)}`
  const label = acquire.outcome.replace(/_/g, ' ').toUpperCase()
  return `acquire  ${label} after ${ms(acquire.totalMs)} (${acquire.phase}): ${oneLine(acquire.message)}${acquire.code && !acquire.message?.includes(acquire.code) ? ` [${acquire.code}]` : ''}`
}

const timeoutValue = (t: TimeoutSetting) => (!t.available ? 'n/a' : t.ms === 0 ? 'off' : (t.value ?? '-'))

function serverLines(server: ServerProbe, width: number, maxRows: number): string[] {
  const c = server.connections
  const lines: string[] = []
  const version = server.server.version.split(' ')[0]
  lines.push(clip(`PostgreSQL ${version} · ${server.probe.database} as ${server.probe.user} · ${timestamp(server.probedAt)}`, width))
  const reserve = c.reserved > 0 ? `${c.superuserReserved}+${c.reserved}` : String(c.superuserReserved)
  lines.push(
    ...wrap(
      `slots    ${c.used} used of ${c.available} (max_connections ${c.maxConnections} - ${reserve} reserved), headroom ${c.headroom}`,
      width,
      '         ',
    ),
  )
  const states = Object.entries(c.byState).sort((a, b) => b[1] - a[1])
  lines.push(
    ...wrap(
      `states   ${states.length ? states.map(([state, n]) => `${stateLabel(state)} ${n}`).join(', ') : 'no other connections'}`,
      width,
      '         ',
    ),
  )

  if (c.groups.length) {
    lines.push('', 'connections by application (the probe itself excluded)')
    lines.push(
      ...capped(c.groups, maxRows, (rows) =>
        fit(
          rows,
          [
            { header: 'application', value: (g) => g.applicationName || '(none)', flex: true },
            { header: 'user', value: (g) => g.user, max: 12 },
            { header: 'state', value: (g) => stateLabel(g.state), max: 21 },
            { header: 'addr', value: (g) => g.clientAddr ?? 'local', max: 15 },
            { header: 'n', value: (g) => g.count, align: 'right' },
            { header: 'xact age', value: (g) => age(g.oldestTransactionSeconds), align: 'right' },
          ],
          width,
        ),
      ),
    )
  }

  lines.push('', `idle in transaction: ${server.idleInTransaction.length || 'none'}`)
  if (server.idleInTransaction.length) {
    lines.push(
      ...capped(server.idleInTransaction, maxRows, (rows) =>
        fit(
          rows,
          [
            { header: 'pid', value: (r) => r.pid, align: 'right' },
            { header: 'application', value: (r) => r.applicationName || '(none)', max: 18 },
            { header: 'xact age', value: (r) => age(r.transactionSeconds), align: 'right' },
            { header: 'idle', value: (r) => `${age(r.idleSeconds)}${r.aborted ? '!' : ''}`, align: 'right' },
            { header: 'last query', value: (r) => r.query, flex: true },
          ],
          width,
        ),
      ),
    )
  }

  lines.push('', `lock waits: ${server.lockWaits.length || 'none'}`)
  if (server.lockWaits.length) {
    lines.push(
      ...capped(server.lockWaits, maxRows, (rows) =>
        fit(
          rows,
          [
            { header: 'pid', value: (r) => r.pid, align: 'right' },
            { header: 'application', value: (r) => r.applicationName || '(none)', max: 16 },
            { header: 'waiting', value: (r) => age(r.waitingSeconds), align: 'right' },
            { header: 'blocked by', value: (r) => r.blockedBy.map((b) => `${b.pid} ${b.applicationName || '?'}`).join(', '), max: 24 },
            { header: 'query', value: (r) => r.query, flex: true },
          ],
          width,
        ),
      ),
    )
  }

  lines.push('', `transactions open ≥ ${age(server.longTransactionSeconds)}: ${server.longTransactions.length || 'none'}`)
  if (server.longTransactions.length) {
    lines.push(
      ...capped(server.longTransactions, maxRows, (rows) =>
        fit(
          rows,
          [
            { header: 'pid', value: (r) => r.pid, align: 'right' },
            { header: 'application', value: (r) => r.applicationName || '(none)', max: 16 },
            { header: 'state', value: (r) => stateLabel(r.state), max: 21 },
            { header: 'xact age', value: (r) => age(r.transactionSeconds), align: 'right' },
            { header: 'query', value: (r) => r.query, flex: true },
          ],
          width,
        ),
      ),
    )
  }

  const timeouts = Object.values(server.timeouts) as TimeoutSetting[]
  lines.push('', 'timeouts in force for the probe session')
  lines.push(
    fit(
      timeouts,
      [
        { header: 'setting', value: (t) => t.name },
        { header: 'value', value: timeoutValue, max: 12 },
        { header: 'source', value: (t) => (t.source === 'client' ? "client (Warden's own connection)" : t.source), flex: true },
      ],
      width,
    ),
  )
  for (const o of server.timeoutOverrides) {
    const scope = [o.role ? `role ${o.role}` : '', o.database ? `database ${o.database}` : ''].filter(Boolean).join(', ')
    lines.push(...wrap(`  ${o.name}=${o.value} for ${scope || 'everyone'}`, width, '    '))
  }
  return lines
}

function pgbouncerLines(probe: PgBouncerProbe, width: number, maxRows: number): string[] {
  if (!probe.reachable) return wrap(`pgbouncer  UNREACHABLE: ${probe.error}`, width)
  const lines = [clip(`pgbouncer  ${[probe.version, probe.url].filter(Boolean).join(' ')}`, width)]
  if (!probe.pools.length) return [...lines, 'no pools']
  const mode = (m: string | null) => (m === 'transaction' ? 'txn' : m === 'statement' ? 'stmt' : (m ?? '-'))
  lines.push(
    ...capped(probe.pools, maxRows, (rows) =>
      fit(
        rows,
        [
          { header: 'database', value: (p) => p.database, flex: true },
          { header: 'user', value: (p) => p.user, max: 12 },
          { header: 'cl.a', value: (p) => p.clActive, align: 'right' },
          { header: 'cl.w', value: (p) => p.clWaiting, align: 'right' },
          { header: 'sv.a', value: (p) => p.svActive, align: 'right' },
          { header: 'sv.i', value: (p) => p.svIdle, align: 'right' },
          { header: 'maxwait', value: (p) => (p.maxwaitSeconds > 0 ? age(p.maxwaitSeconds) : '0'), align: 'right' },
          { header: 'mode', value: (p) => mode(p.poolMode) },
        ],
        width,
      ),
    ),
  )
  lines.push('  cl.a/cl.w: clients active/waiting; sv.a/sv.i: server connections active/idle')
  for (const s of probe.stats.slice(0, maxRows)) {
    lines.push(
      ...wrap(
        `  ${s.database}: ${s.totalXactCount} xacts, ${s.totalQueryCount} queries, waited ${age(s.totalWaitTimeSeconds)} in all (avg ${age(s.avgWaitTimeSeconds)})`,
        width,
        '    ',
      ),
    )
  }
  return lines
}

export function renderPoolProbe(probe: PoolProbe, options: RenderOptions = {}): string {
  const width = Math.max(40, options.width ?? 80)
  const maxRows = options.maxRows ?? 20
  const lines = serverLines(probe.server, width, maxRows)
  lines.push('', ...wrap(acquireLine(probe.acquire), width, '         '))
  if (probe.pgbouncer) lines.push('', ...pgbouncerLines(probe.pgbouncer, width, maxRows))
  if (probe.server.warnings.length) lines.push('', ...probe.server.warnings.flatMap((w) => wrap(`! ${w}`, width)))
  // Table lines are fitted and prose is wrapped; this only guards against an overlong token.
  return lines
    .flatMap((line) => line.split('\n'))
    .map((line) => clip(line, width))
    .join('\n')
}
