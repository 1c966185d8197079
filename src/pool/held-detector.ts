import { AsyncLocalStorage } from 'node:async_hooks'
import { captureStack, type CapturedStack } from './stack.js'

/**
 * Which checked-out clients an async context holds, for the "connection held during an LLM
 * call" detector (PROBLEMS.md §1).
 *
 * A `pool.connect()` made in a context pushes a new immutable frame onto that context (with
 * `enterWith`, because the caller's continuation after `await pool.connect()` must see it): the
 * still-unreleased checkouts of the current frame plus the new one. Released checkouts are
 * dropped when the next frame is built, so a loop that connects a million times keeps a frame
 * as short as the number of clients it holds at once. Work started later from that context
 * (nested agents, tools) inherits the frame; concurrent requests that did not descend from it
 * do not see it. Two pieces of work started in the same synchronous tick share their caller's
 * context; wrap each in `poolScope()` to keep them apart (a framework does it per request).
 */

export const CHECKOUT_PENDING = 0
export const CHECKOUT_HELD = 1
export const CHECKOUT_RELEASED = 2
export const CHECKOUT_FAILED = 3

/** What a checkout needs from the instrumented pool it came from. */
export interface CheckoutOwner {
  readonly poolName: string
  /** counts and (once per call site) logs an LLM call made while `checkouts` are held */
  heldDuringLlmCall(operation: string, checkouts: readonly Checkout[], now: number, llmCallStack: CapturedStack | undefined): void
  describeCheckout(checkout: Checkout, now: number): HeldClientInfo
}

/** One connect() of an instrumented pool, from the call to the release. */
export class Checkout {
  state = CHECKOUT_PENDING
  /** performance.now() when the client was handed over */
  acquiredAt = 0
  /** text of the last statement run on the client during this checkout (never its values) */
  lastQuery: string | undefined = undefined
  longHoldWarned = false

  constructor(
    readonly owner: CheckoutOwner,
    /** performance.now() of the connect() call */
    readonly requestedAt: number,
    /** pool.query()'s own connect: held only for the statement, never tracked as a holder */
    readonly convenience: boolean,
    readonly stack: CapturedStack | undefined,
  ) {}
}

/** A client the current context holds, as reported by heldClients() and in warnings. */
export interface HeldClientInfo {
  poolName: string
  heldMs: number
  /** the statement text last run on it, truncated; values are never recorded */
  lastQuery: string | undefined
  /** the application frame that called connect(), when stacks are captured */
  callSite: string | undefined
  /** the acquiring stack (frames of this module left out), when stacks are captured */
  stack: string | undefined
}

interface Frame {
  readonly held: readonly Checkout[]
}

const EMPTY: Frame = Object.freeze({ held: Object.freeze([]) })

/** One storage per process, even if this module is loaded twice (src and dist). */
const STORAGE_KEY = Symbol.for('warden.pool.heldClientsStorage')
const globals = globalThis as unknown as { [STORAGE_KEY]?: AsyncLocalStorage<Frame> }
const storage: AsyncLocalStorage<Frame> = (globals[STORAGE_KEY] ??= new AsyncLocalStorage<Frame>())

/** Records that the current async context is acquiring `checkout` (called inside connect()). */
export function enterCheckout(checkout: Checkout): void {
  const current = storage.getStore()
  let held: Checkout[]
  if (current === undefined || current.held.length === 0) {
    held = [checkout]
  } else {
    held = []
    for (const earlier of current.held) {
      if (earlier.state === CHECKOUT_HELD || earlier.state === CHECKOUT_PENDING) held.push(earlier)
    }
    held.push(checkout)
  }
  storage.enterWith({ held })
}

function currentlyHeld(): Checkout[] {
  const frame = storage.getStore()
  if (frame === undefined) return []
  return frame.held.filter((checkout) => checkout.state === CHECKOUT_HELD)
}

/** The clients of instrumented pools that the current async context holds right now. */
export function heldClients(): HeldClientInfo[] {
  const now = performance.now()
  return currentlyHeld().map((checkout) => checkout.owner.describeCheckout(checkout, now))
}

/**
 * Runs `fn` in a fresh context that holds no client: checkouts made by earlier or sibling work
 * are not attributed to it. Use it per request or per job (e.g. an Express middleware
 * `(req, res, next) => poolScope(next)`) and around work started in parallel.
 */
export function poolScope<T>(fn: () => T): T {
  return storage.run(EMPTY, fn)
}

export interface LlmCallOptions {
  /** throw ConnectionHeldDuringLlmCallError instead of making the call (tests, development) */
  strict?: boolean
}

export class ConnectionHeldDuringLlmCallError extends Error {
  constructor(
    readonly operation: string,
    readonly held: HeldClientInfo[],
  ) {
    const where = held.map((info) => `${info.poolName}${info.callSite ? ` (acquired ${info.callSite})` : ''}`).join(', ')
    super(`LLM call "${operation}" started while holding ${held.length} database connection(s): ${where}; release before calling the LLM`)
    this.name = 'ConnectionHeldDuringLlmCallError'
  }
}

/**
 * Wrap an application's LLM call: when it starts while the current async context still holds
 * a client checked out of an instrumented pool (connect() without release), it increments
 * `warden_db_connection_held_during_llm_call_total{pool_name, operation}` and logs a warning
 * once per acquiring call site. `operation` is a metric label: keep it low-cardinality
 * ("chat", "summarise", "tool_router"), never an id. Clients used by pool.query() do not count.
 */
export async function llmCall<T>(operation: string, fn: () => T | Promise<T>, options: LlmCallOptions = {}): Promise<T> {
  const held = currentlyHeld()
  if (held.length > 0) {
    const now = performance.now()
    // rare (only when a client is held), so always affordable: where the LLM call is made
    const llmCallStack = captureStack(llmCall)
    const byOwner = new Map<CheckoutOwner, Checkout[]>()
    for (const checkout of held) {
      const list = byOwner.get(checkout.owner)
      if (list) list.push(checkout)
      else byOwner.set(checkout.owner, [checkout])
    }
    for (const [owner, checkouts] of byOwner) owner.heldDuringLlmCall(operation, checkouts, now, llmCallStack)
    if (options.strict) {
      throw new ConnectionHeldDuringLlmCallError(
        operation,
        held.map((checkout) => checkout.owner.describeCheckout(checkout, now)),
      )
    }
  }
  return await fn()
}
