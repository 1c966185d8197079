/**
 * Query texts in pg_stat_activity can hold literal values (user input, e-mail addresses, keys).
 * The read routes are open (only mutations need the token), so their query texts are shown to
 * the admin token only; everyone else gets the same objects with `query: null`.
 */
export function hideQueryTexts<T>(value: T): T {
  if (Array.isArray(value)) return (value as unknown[]).map((item) => hideQueryTexts(item)) as T
  if (value === null || typeof value !== 'object' || value instanceof Date) return value
  const copy: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) {
    if (key === 'query') copy[key] = null
    else if (key === 'queryTruncated') copy[key] = false
    else copy[key] = hideQueryTexts(item)
  }
  return copy as T
}

/** Doctor's messages quote the last query as `last query: "…"` (JSON string). */
export const hideQuotedQueries = (message: string): string =>
  message.replace(/(last query|query): "(?:[^"\\]|\\.)*"/g, '$1: (shown with the admin token)')
