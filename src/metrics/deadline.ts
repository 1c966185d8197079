export class DeadlineError extends Error {
  override name = 'DeadlineError'
}

/**
 * Races `work` against a deadline and an optional abort signal (the controller is aborted when
 * the deadline passes, so the work can stop early). The work itself keeps running in the
 * background — statements end at their own statement_timeout — only its answer is ignored.
 */
export function withDeadline<T>(
  work: Promise<T>,
  timeoutMs: number,
  controller: AbortController = new AbortController(),
  label = '',
): Promise<T> {
  work.catch(() => undefined)
  const message = `${label}no answer within ${Math.round(timeoutMs)} ms`
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    const fail = () => reject(new DeadlineError(controller.signal.reason instanceof Error ? controller.signal.reason.message : message))
    timer = setTimeout(() => controller.abort(new DeadlineError(message)), timeoutMs)
    if (controller.signal.aborted) fail()
    controller.signal.addEventListener('abort', fail, { once: true })
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}
