export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const
export type StopSignal = (typeof STOP_SIGNALS)[number]

/** Resolves on the first SIGINT/SIGTERM; later ones get Node's default, so a stuck stop can still be killed. */
export function untilStopSignal(): { signal: Promise<StopSignal>; dispose: () => void } {
  let resolve!: (s: StopSignal) => void
  const signal = new Promise<StopSignal>((r) => (resolve = r))
  const listeners = STOP_SIGNALS.map((name) => [name, () => (dispose(), resolve(name))] as const)
  const dispose = () => {
    for (const [name, listener] of listeners) process.removeListener(name, listener)
  }
  for (const [name, listener] of listeners) process.on(name, listener)
  return { signal, dispose }
}
