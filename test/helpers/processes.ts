import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'

/** Processes whose command line names this data dir: a postgres left running would show up here. */
export function processesUsing(dataDir: string): number[] {
  if (!existsSync('/proc')) return []
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dataDir)) pids.push(Number(entry))
    } catch {
      // exited while we looked
    }
  }
  return pids
}

export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
  })
}
