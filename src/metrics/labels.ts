/**
 * Label values come from the user's data (the mapped group column, application_name). A
 * misconfigured mapping (say, group: user_id) must not turn into a million series: only the
 * largest values keep their own label, the rest are folded into OTHER_LABEL.
 */
export const MAX_LABEL_VALUES = 50
export const OTHER_LABEL = '(other)'
/** an empty label value is the same as no label to Prometheus: name it instead */
export const EMPTY_LABEL = '(none)'

export const labelValue = (value: string | null | undefined): string =>
  value === null || value === undefined || value === '' ? EMPTY_LABEL : value

/** The label values that keep their own series: the `max - 1` largest by count when there are more than `max`. */
export function keptLabels(counts: Iterable<{ label: string; count: number }>, max = MAX_LABEL_VALUES): (label: string) => string {
  const all = [...counts]
  if (all.length <= max) return (label) => label
  const kept = new Set(
    all
      .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label))
      .slice(0, max - 1)
      .map((entry) => entry.label),
  )
  return (label) => (kept.has(label) ? label : OTHER_LABEL)
}
