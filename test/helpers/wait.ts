/**
 * The suite's one way to wait: poll the condition itself with a deadline, and say what was
 * awaited (and the probe's last error) when it never came. A fixed sleep stands in for
 * synchronisation only where there is no condition to observe.
 */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  what: string,
  timeoutMs = 20_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== null && value !== false) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`)
    await sleep(intervalMs)
  }
}

/** A pause for its own sake: time passing is the point (ages, rates), not a stand-in for an event. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
