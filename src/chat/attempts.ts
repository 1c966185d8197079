import { AsyncLocalStorage } from 'node:async_hooks'
import type { ClientOptions } from '@anthropic-ai/sdk'

export type Fetch = NonNullable<ClientOptions['fetch']>

/**
 * Counting LLM attempts where they happen. The SDK retries 408/409/429/5xx inside one
 * `messages.create()`, so the call's outcome hides every fault it survived; a `fetch` handed to
 * the SDK sees each HTTP attempt, retries included, as any application can do with its client.
 */

/** What an attempt whose request was aborted ended as: the caller knows why it aborted, fetch does not. */
const callScope = new AsyncLocalStorage<() => string | undefined>()

/** Runs one LLM call so that its aborted attempts are labelled with the caller's reason (cancelled or timeout). */
export const withAbortReason = <T>(reason: () => string | undefined, call: () => Promise<T>): Promise<T> => callScope.run(reason, call)

/** error_type of one attempt: '' for 2xx, the HTTP status otherwise, timeout / cancelled / connection_error without an answer. */
export type AttemptObserver = (errorType: string) => void

export function countingFetch(observe: AttemptObserver, inner: Fetch = globalThis.fetch): Fetch {
  return async (input, init) => {
    let response: Response
    try {
      response = await inner(input, init)
    } catch (error) {
      // An abort without a reason of ours is the SDK's own header timeout.
      observe(init?.signal?.aborted ? (callScope.getStore()?.() ?? 'timeout') : 'connection_error')
      throw error
    }
    observe(response.ok ? '' : String(response.status))
    return response
  }
}
