/** How many targets are worked on at once: enough to hide one slow database, few enough for a 2-core host. */
export const TARGET_CONCURRENCY = 4

/** Maps with at most `limit` calls in flight, keeping the order of the input. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index]!, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return results
}
