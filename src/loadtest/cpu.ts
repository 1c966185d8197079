import { readFileSync } from 'node:fs'

/**
 * CPU time from /proc (Linux; null elsewhere): utime + stime in 10 ms ticks. Per thread it
 * tells a thread that needed the CPU from one that waited for a CPU others held, which the
 * event loop's busy share alone cannot.
 */
const CLOCK_TICK_MS = 10

function statCpuMs(path: string): number | null {
  try {
    const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS
  } catch {
    return null
  }
}

export const threadCpuMs = (): number | null => statCpuMs('/proc/thread-self/stat')

function commandOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return null
  }
}

/**
 * Sum over processes named `command` (PostgreSQL backends: 'postgres'). The name check keeps a
 * remote or containerised server's pids from being read off unrelated local processes; null
 * when none matched.
 */
export function processesCpuMs(pids: readonly number[], command: string): number | null {
  const each = pids.filter((pid) => commandOf(pid) === command).map((pid) => statCpuMs(`/proc/${pid}/stat`))
  const known = each.filter((ms): ms is number => ms !== null)
  return known.length === 0 || known.length < pids.length ? null : known.reduce((a, b) => a + b, 0)
}
