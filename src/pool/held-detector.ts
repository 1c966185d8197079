import { AsyncLocalStorage } from 'node:async_hooks'
import { subscribe } from 'node:diagnostics_channel'
import { captureStack, type CapturedStack } from './stack.js'

/**
 * Which checked-out clients a logical operation holds, for the "connection held during an LLM
 * call" detector (PROBLEMS.md §1). The model, in full in docs/instrumenting.md:
 *
 * - An operation is a mutable scope carried by AsyncLocalStorage. Each incoming node:http request
 *   opens one (through the `http.server.request.start` diagnostics channel), `poolScope(fn)` opens
 *   one, and work outside any scope belongs to the process's root operation.
 * - A connect() belongs to the operation current where connect() was called, until release. Every
 *   piece of work descending from that operation shares the same scope object, so a client
 *   acquired inside a helper, a repository method or a transaction wrapper — after any number of
 *   awaits — is seen by the caller that the client is handed back to.
 * - An llmCall() counts the clients held by its operation and by the operations enclosing it (a
 *   poolScope is nested in the operation that opened it; the root encloses scopes opened outside
 *   any other; a request encloses nothing), never those of sibling or child scopes, nor of other
 *   requests. When a scope's fn settles, the clients it still holds pass to the operation that
 *   opened it (a helper that returns its client hands it to its caller).
 *
 * The first version pushed an immutable frame with `enterWith` inside connect(); it could not see a
 * client acquired after an await in a callee, because async context flows from caller to callee,
 * never back: only an object created before the fork, and shared, reaches both.
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
  /** the operation holding it, while it is tracked for llmCall() */
  scope: PoolOperation | undefined = undefined
  /** PostgreSQL backend pid of the client, once handed over */
  backendPid: number | undefined = undefined

  constructor(
    readonly owner: CheckoutOwner,
    /** performance.now() of the connect() call */
    readonly requestedAt: number,
    /** pool.query()'s own connect: held only for the statement, never tracked as a holder */
    readonly convenience: boolean,
    readonly stack: CapturedStack | undefined,
  ) {}
}

/** A client the current operation holds, as reported by heldClients() and in warnings. */
export interface HeldClientInfo {
  poolName: string
  heldMs: number
  /** PostgreSQL backend pid (pg_stat_activity.pid) of the client, when the server sent it */
  backendPid: number | undefined
  /** the statement text last run on it, truncated; values are never recorded */
  lastQuery: string | undefined
  /** the application frame that called connect(), when stacks are captured */
  callSite: string | undefined
  /** the acquiring stack (frames of this module left out), when stacks are captured */
  stack: string | undefined
}

/** A logical operation: the unit whose held clients an llmCall() made inside it counts. */
class PoolOperation {
  /** checkouts made in this operation (pending or held); released ones are removed */
  readonly checkouts = new Set<Checkout>()

  constructor(
    /** the operation whose clients this one's LLM calls also count; none for a top-level operation */
    readonly enclosing: PoolOperation | undefined,
    /** where clients still held when this scope's fn settles go: the scope that opened it */
    readonly parent: PoolOperation | undefined,
  ) {}

  /** poolScope's fn settled: what it still holds now belongs to the code that opened the scope. */
  end(): void {
    const parent = this.parent
    if (parent === undefined || this.checkouts.size === 0) return
    for (const checkout of this.checkouts) {
      checkout.scope = parent
      parent.checkouts.add(checkout)
    }
    this.checkouts.clear()
  }
}

interface DetectorState {
  storage: AsyncLocalStorage<PoolOperation>
  /** work outside any scope: one operation for the whole process */
  root: PoolOperation
  httpScopes: boolean
}

/** One storage and one root per process, even if this module is loaded twice (src and dist). */
const STATE_KEY = Symbol.for('warden.pool.heldDetector.v2')
const globals = globalThis as unknown as { [STATE_KEY]?: DetectorState }
const state: DetectorState = (globals[STATE_KEY] ??= {
  storage: new AsyncLocalStorage<PoolOperation>(),
  root: new PoolOperation(undefined, undefined),
  httpScopes: false,
})
const { storage, root } = state

/**
 * Gives every request of every node:http(s) server in the process (Express, Fastify, Koa, Nest)
 * its own top-level operation, from the moment its handler runs. Called by the first pool that
 * tracks holders; idempotent. Turns AsyncLocalStorage on for the process.
 */
export function scopeHttpRequests(): void {
  if (state.httpScopes) return
  state.httpScopes = true
  subscribe('http.server.request.start', () => storage.enterWith(new PoolOperation(undefined, root)))
}

/** Records that the current operation is acquiring `checkout` (called inside connect()). */
export function attachCheckout(checkout: Checkout): void {
  const scope = storage.getStore() ?? root
  checkout.scope = scope
  scope.checkouts.add(checkout)
}

/** The checkout was released or failed: no operation holds it any more. */
export function detachCheckout(checkout: Checkout): void {
  const scope = checkout.scope
  if (scope === undefined) return
  scope.checkouts.delete(checkout)
  checkout.scope = undefined
}

function currentlyHeld(): Checkout[] {
  const held: Checkout[] = []
  for (let scope: PoolOperation | undefined = storage.getStore() ?? root; scope !== undefined; scope = scope.enclosing) {
    for (const checkout of scope.checkouts) if (checkout.state === CHECKOUT_HELD) held.push(checkout)
  }
  return held
}

/** The clients of instrumented pools that the current operation (and those enclosing it) holds right now. */
export function heldClients(): HeldClientInfo[] {
  const now = performance.now()
  return currentlyHeld().map((checkout) => checkout.owner.describeCheckout(checkout, now))
}

/**
 * Runs `fn` as an operation of its own, nested in the current one (the request, an enclosing
 * poolScope, or the root when there is none): its LLM calls count the clients it holds and those
 * its enclosing operations hold (they wait for it), never those of sibling scopes. Use it per job,
 * queue message or websocket message, and around tools or sub-agents run in parallel. Clients
 * still held when `fn` returns (or its promise settles) pass to the operation that called it.
 */
export function poolScope<T>(fn: () => T): T {
  const current = storage.getStore() ?? root
  const scope = new PoolOperation(current, current)
  let result: T
  try {
    result = storage.run(scope, fn)
  } catch (error) {
    scope.end()
    throw error
  }
  // finally(), not then(end, end): a rejection the caller never handles must stay unhandled
  if (result instanceof Promise) return result.finally(() => scope.end()) as T
  scope.end()
  return result
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
 * Wrap an application's LLM call: when it starts while its operation still holds a client
 * checked out of an instrumented pool (connect() without release), it increments
 * `warden_db_connection_held_during_llm_call_total{db_client_connection_pool_name, operation}`
 * once per pool and logs a warning once per acquiring call site. `operation` is a metric label:
 * keep it low-cardinality ("chat", "summarise", "tool_router"), never an id. Clients used by
 * pool.query() do not count.
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
