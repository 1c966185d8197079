const UNIT_SECONDS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
  w: 604800,
}

export const DURATION_EXPECTED = 'a positive duration such as 90s, 15m, 2h, 7d or 1h30m'

/**
 * Parses "2h", "15m", "1h30m", "500ms" into seconds. Returns undefined for anything else,
 * including negatives and zero: every duration Warden takes is a positive span of time.
 */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input > 0 ? input : undefined
  const text = input.trim().toLowerCase()
  if (text === '') return undefined
  let total = 0
  let rest = text
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/.exec(rest)
    if (!match) return undefined
    total += Number(match[1]) * UNIT_SECONDS[match[2]!]!
    rest = rest.slice(match[0].length)
  }
  return total > 0 ? total : undefined
}

/** Human form for tables: 444h → "18d12h", 95s → "1m35s". Two largest units are enough to read. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-'
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`
  const units: Array<[string, number]> = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ]
  const parts: string[] = []
  let rest = Math.floor(seconds)
  for (const [unit, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
    if (parts.length === 2) break
  }
  return parts.join('')
}
