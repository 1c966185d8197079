/**
 * Synthetic conversation_sessions rows shaped like the websocket post-mortem's table: most
 * sessions closed properly, a few live ones, a few idle but not yet orphaned, and orphans whose
 * disconnect never updated the row, the oldest silent for 444 h as in the post-mortem.
 *
 * Rows carry ages (seconds before now) rather than instants, so the server's clock anchors them
 * at insert time and the same seed gives the same table whenever it runs.
 */

export interface DemoGroup {
  name: string
  /** share of all traffic */
  weight: number
  /** median length of a closed session */
  medianSeconds: number
  /** how likely this agent's sessions are to leak, relative to the others */
  leakiness: number
}

// support-agent is the one behind the websocket with the broken disconnect(), so it leaks most.
export const DEMO_GROUPS: readonly DemoGroup[] = [
  { name: 'support-agent', weight: 0.4, medianSeconds: 6 * 60, leakiness: 8 },
  { name: 'billing-agent', weight: 0.2, medianSeconds: 3 * 60, leakiness: 1.5 },
  { name: 'research-agent', weight: 0.2, medianSeconds: 14 * 60, leakiness: 2 },
  { name: 'code-agent', weight: 0.2, medianSeconds: 25 * 60, leakiness: 1 },
]

/** The post-mortem's oldest stuck session. */
export const POST_MORTEM_MAX_SILENT_SECONDS = 444 * 3600

const MINUTE = 60
const HOUR = 3600
const DAY = 86400
const WEEK = 7 * DAY

export type DemoSessionState = 'closed' | 'live' | 'idle' | 'orphaned'

export interface DemoSession {
  id: string
  userId: string
  group: string
  state: DemoSessionState
  active: boolean
  startAgoSeconds: number
  /** null: the session never recorded activity, as some orphans in the post-mortem */
  lastActivityAgoSeconds: number | null
  endAgoSeconds: number | null
  durationSeconds: number | null
}

export interface DemoSeedOptions {
  sessions: number
  seed: number
  /** the mapping's orphanAfter: live and idle sessions stay inside it, orphans well past it */
  orphanAfterSeconds: number
}

export interface DemoSeedReport {
  seed: number
  sessions: number
  closed: number
  live: number
  idle: number
  orphaned: number
  byGroup: Record<string, { sessions: number; open: number; orphaned: number }>
  oldestOrphanSilentSeconds: number | null
  oldestStartSeconds: number
}

export interface DemoDataset {
  rows: DemoSession[]
  report: DemoSeedReport
}

/** mulberry32: tiny, fast, and the same sequence on every platform for a given seed. */
export function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Shares of each state: about 4 % orphaned, 1.5 % live, 0.6 % idle, at least one of each. */
export function planCounts(sessions: number): Record<DemoSessionState, number> {
  const orphaned = Math.max(1, Math.round(sessions * 0.04))
  const live = Math.max(1, Math.round(sessions * 0.015))
  const idle = Math.max(1, Math.round(sessions * 0.006))
  const closed = sessions - orphaned - live - idle
  if (closed < 0) throw new Error(`at least ${orphaned + live + idle} sessions are needed for a demo`)
  return { closed, live, idle, orphaned }
}

export function generateDemoSessions(options: DemoSeedOptions): DemoDataset {
  const random = prng(options.seed)
  const between = (low: number, high: number) => low + (high - low) * random()
  const pick = (weightOf: (g: DemoGroup) => number): DemoGroup => {
    const total = DEMO_GROUPS.reduce((sum, g) => sum + weightOf(g), 0)
    let r = random() * total
    for (const group of DEMO_GROUPS) {
      r -= weightOf(group)
      if (r < 0) return group
    }
    return DEMO_GROUPS[DEMO_GROUPS.length - 1]!
  }
  // Log-normal lengths: most chats are short, a few run for hours.
  const length = (group: DemoGroup) => {
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
    return Math.min(4 * HOUR, Math.max(20, group.medianSeconds * Math.exp(0.8 * normal)))
  }
  const word = () => Math.floor(random() * 0x100000000)
  const hex = (n: number, width = 8) => n.toString(16).padStart(width, '0')
  const uuid = () => {
    const [a, b, c, d] = [word(), word(), word(), word()]
    // version 4 and the RFC 4122 variant, so it reads as a real random UUID
    return `${hex(a)}-${hex(b >>> 16, 4)}-${hex(((b & 0x0fff) | 0x4000) >>> 0, 4)}-${hex(((c >>> 16) & 0x3fff) | 0x8000, 4)}-${hex(c & 0xffff, 4)}${hex(d)}`
  }
  const user = () => `user-${String(1 + Math.floor(random() * 1500)).padStart(5, '0')}`

  const orphanAfter = options.orphanAfterSeconds
  const counts = planCounts(options.sessions)
  const rows: DemoSession[] = []
  const base = () => ({ id: uuid(), userId: user() })

  for (let i = 0; i < counts.closed; i++) {
    const group = pick((g) => g.weight)
    const duration = length(group)
    const startAgo = between(duration + MINUTE, WEEK)
    const endAgo = startAgo - duration
    rows.push({
      ...base(),
      group: group.name,
      state: 'closed',
      active: false,
      startAgoSeconds: startAgo,
      lastActivityAgoSeconds: endAgo,
      endAgoSeconds: endAgo,
      durationSeconds: Math.round(duration),
    })
  }
  for (let i = 0; i < counts.live; i++) {
    const group = pick((g) => g.weight)
    const startAgo = between(MINUTE, 3 * HOUR)
    const silent = between(0, Math.min(startAgo, 10 * MINUTE, orphanAfter / 4))
    rows.push({
      ...base(),
      group: group.name,
      state: 'live',
      active: true,
      startAgoSeconds: startAgo,
      lastActivityAgoSeconds: silent,
      endAgoSeconds: null,
      durationSeconds: null,
    })
  }
  for (let i = 0; i < counts.idle; i++) {
    const group = pick((g) => g.weight)
    // Quiet, but inside orphanAfter with a margin: a sweep must leave these alone.
    const silent = between(orphanAfter * 0.25, orphanAfter * 0.85)
    rows.push({
      ...base(),
      group: group.name,
      state: 'idle',
      active: true,
      startAgoSeconds: silent + between(0, 30 * MINUTE),
      lastActivityAgoSeconds: silent,
      endAgoSeconds: null,
      durationSeconds: null,
    })
  }
  const tailMax = Math.max(POST_MORTEM_MAX_SILENT_SECONDS, orphanAfter + DAY)
  const recentMin = orphanAfter + 15 * MINUTE
  for (let i = 0; i < counts.orphaned; i++) {
    const group = pick((g) => g.weight * g.leakiness)
    // The first orphan is the post-mortem's worst; two more fill the weeks before the last seven days.
    const silent =
      i === 0 ? tailMax : i < 3 ? between(Math.min(WEEK + HOUR, tailMax), tailMax) : between(recentMin, Math.max(recentMin, WEEK))
    const neverActive = random() < 0.15
    const startAgo = neverActive ? silent : silent + length(group) * between(0.2, 1)
    rows.push({
      ...base(),
      group: group.name,
      state: 'orphaned',
      active: true,
      startAgoSeconds: startAgo,
      lastActivityAgoSeconds: neverActive ? null : silent,
      endAgoSeconds: null,
      durationSeconds: null,
    })
  }
  return { rows, report: reportOf(rows, options.seed) }
}

function reportOf(rows: DemoSession[], seed: number): DemoSeedReport {
  const counts: Record<DemoSessionState, number> = { closed: 0, live: 0, idle: 0, orphaned: 0 }
  const byGroup: DemoSeedReport['byGroup'] = {}
  for (const group of DEMO_GROUPS) byGroup[group.name] = { sessions: 0, open: 0, orphaned: 0 }
  let oldestOrphan: number | null = null
  let oldestStart = 0
  for (const row of rows) {
    counts[row.state] += 1
    oldestStart = Math.max(oldestStart, row.startAgoSeconds)
    const entry = byGroup[row.group]!
    entry.sessions += 1
    if (row.active) entry.open += 1
    if (row.state === 'orphaned') {
      entry.orphaned += 1
      oldestOrphan = Math.max(oldestOrphan ?? 0, row.lastActivityAgoSeconds ?? row.startAgoSeconds)
    }
  }
  return {
    seed,
    sessions: rows.length,
    ...counts,
    byGroup,
    oldestOrphanSilentSeconds: oldestOrphan === null ? null : Math.round(oldestOrphan),
    oldestStartSeconds: Math.round(oldestStart),
  }
}
