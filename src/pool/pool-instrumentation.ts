/* eslint-disable @typescript-eslint/unbound-method, @typescript-eslint/no-this-alias, prefer-rest-params, @typescript-eslint/no-explicit-any --
   patching pg's methods in place must keep their `this`, their exact arguments (callback forms included) and @types/pg's signatures */
import { AsyncResource } from 'node:async_hooks'
import type pg from 'pg'
import { Registry, type Counter } from 'prom-client'
import {
  CHECKOUT_FAILED,
  CHECKOUT_HELD,
  CHECKOUT_RELEASED,
  Checkout,
  attachCheckout,
  detachCheckout,
  scopeHttpRequests,
  type CheckoutOwner,
  type HeldClientInfo,
} from './held-detector.js'
import { consoleLogger, type PoolLogger, type PoolWarning } from './logger.js'
import { POOL_NAME_LABEL, poolMetrics, poolObserver, type PoolGaugeSource, type PoolMetrics } from './metrics.js'
import { callSite, captureStack, DEFAULT_STACK_IGNORE, frameLocation, stackFrames, statementText, type CapturedStack } from './stack.js'

export interface InstrumentPoolOptions {
  /** the db_client_connection_pool_name label; unique among the live pools of a registry */
  poolName: string
  /** where the metrics go (never the global registry); a private one is made when omitted */
  registry?: Registry
  /** receives warnings; pino-compatible `{ warn(obj, msg) }`. Default: consoleLogger (stderr) */
  logger?: PoolLogger
  /** warn (once per call site) about a client held longer than this; 0 turns it off. Default 5000 */
  longHoldMs?: number
  /**
   * The acquiring stack of connect(), for warnings. Capturing one costs ≈ 2–5 µs per connect()
   * (V8 walks the stack; it is formatted only when a warning is logged), so by default
   * ('on-demand') none are captured until a warning fires without one; from then on, for 10
   * minutes, every connect() of this pool records its stack, so the next occurrence names the
   * call site. true: always capture; false: never.
   */
  captureStacks?: boolean | 'on-demand'
  /**
   * track which operation (request, poolScope, the rest of the process) holds which client, for
   * llmCall() and heldClients(); also gives every node:http request its own operation. Default true
   */
  detectHeldDuringLlmCall?: boolean
  /** frames never taken as the acquiring call site, besides node_modules, Node internals and this module (e.g. your own DB wrapper) */
  stackIgnore?: readonly RegExp[]
  /** statement text kept for warnings, in characters. Default 200 */
  maxQueryTextLength?: number
  /** keep string literals in the statement text of warnings (by default they show as '?'; bind values are never kept) */
  keepQueryLiterals?: boolean
}

type ConnectCallback = (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: any) => void) => void // `any`: as in @types/pg
type ReleaseFn = (err?: Error | boolean) => void
type Method = (...args: unknown[]) => unknown

export const INSTRUMENTATION = Symbol.for('warden.pool.instrumentation')
/** the tracked checkout a client currently belongs to (set only for connect(), not pool.query) */
const CLIENT_CHECKOUT = Symbol('warden.pool.clientCheckout')
const QUERY_PATCHED = Symbol('warden.pool.queryPatched')
const MAX_REMEMBERED_SITES = 10_000
const ON_DEMAND_WINDOW_MS = 10 * 60_000
const TIMEOUT_MESSAGES = new Set(['timeout exceeded when trying to connect', 'Connection terminated due to connection timeout'])
const STACKS_NEVER = 0
const STACKS_ALWAYS = 1
const STACKS_ON_DEMAND = 2

export type PatchedPool = pg.Pool & { [INSTRUMENTATION]?: PoolInstrumentation; Promise?: PromiseConstructor }
type PatchedClient = pg.PoolClient & { [CLIENT_CHECKOUT]?: Checkout; [QUERY_PATCHED]?: true }

/** Once-per-key memory with a bound, so a pathological app cannot grow it without limit. */
class SiteMemory {
  private readonly seen = new Set<string>()
  firstTime(key: string): boolean {
    if (this.seen.has(key)) return false
    if (this.seen.size >= MAX_REMEMBERED_SITES) this.seen.clear()
    this.seen.add(key)
    return true
  }
}

/** The state behind one instrumented pool. Read it with getPoolInstrumentation(pool). */
export class PoolInstrumentation implements CheckoutOwner, PoolGaugeSource {
  readonly poolName: string
  readonly registry: Registry
  readonly metrics: PoolMetrics
  readonly longHoldMs: number
  readonly detectHeldDuringLlmCall: boolean
  /** connect() calls (including pool.query's) without a client yet */
  pending = 0
  /** > 0 while pool.query() runs its synchronous part: its connect() is a convenience one */
  private convenienceDepth = 0
  private readonly stackMode: number
  /** on-demand stacks: performance.now() until which every connect() captures its stack */
  private stacksUntil = 0
  private readonly logger: PoolLogger
  private readonly stackIgnore: readonly RegExp[]
  private readonly maxQueryTextLength: number
  private readonly keepQueryLiterals: boolean
  private readonly observeWait: (seconds: number) => void
  private readonly observeUse: (seconds: number) => void
  private readonly timeouts: Counter.Internal
  private readonly heldSites = new SiteMemory()
  private readonly longHoldSites = new SiteMemory()
  /** connect() checkouts still held, in acquire order (a Set keeps insertion order) */
  private readonly held = new Set<Checkout>()
  private sweeper: NodeJS.Timeout | undefined

  constructor(
    readonly pool: pg.Pool,
    options: InstrumentPoolOptions,
  ) {
    if (typeof options.poolName !== 'string' || options.poolName.trim() === '')
      throw new Error('instrumentPool: poolName must be a non-empty string')
    this.poolName = options.poolName
    this.registry = options.registry ?? new Registry()
    this.logger = options.logger ?? consoleLogger
    this.longHoldMs = Math.max(0, options.longHoldMs ?? 5000)
    const stacks = options.captureStacks ?? 'on-demand'
    this.stackMode = stacks === 'on-demand' ? STACKS_ON_DEMAND : stacks ? STACKS_ALWAYS : STACKS_NEVER
    this.detectHeldDuringLlmCall = options.detectHeldDuringLlmCall ?? true
    if (this.detectHeldDuringLlmCall) scopeHttpRequests()
    this.stackIgnore = [...DEFAULT_STACK_IGNORE, ...(options.stackIgnore ?? [])]
    this.maxQueryTextLength = options.maxQueryTextLength ?? 200
    this.keepQueryLiterals = options.keepQueryLiterals ?? false
    this.metrics = poolMetrics(this.registry)
    const other = this.metrics.sources.get(this.poolName)
    if (other !== undefined && other !== this) {
      throw new Error(
        `instrumentPool: a live pool named "${this.poolName}" already reports to this registry; give each pool its own poolName`,
      )
    }
    this.metrics.sources.set(this.poolName, this)
    // series exist from the start (0), so rate() and "increase > 0" alerts work before the first
    // event; a pool re-created under the same name keeps counting where the last one stopped
    const labels = { [POOL_NAME_LABEL]: this.poolName }
    if (!this.metrics.namesSeen.has(this.poolName)) {
      this.metrics.namesSeen.add(this.poolName)
      this.metrics.waitTime.zero(labels)
      this.metrics.useTime.zero(labels)
    }
    this.metrics.timeouts.inc(labels, 0)
    this.observeWait = poolObserver(this.metrics.waitTime, this.poolName)
    this.observeUse = poolObserver(this.metrics.useTime, this.poolName)
    this.timeouts = this.metrics.timeouts.labels(labels)
  }

  get idle(): number {
    return this.pool.idleCount
  }

  get used(): number {
    return this.pool.totalCount - this.pool.idleCount
  }

  get max(): number {
    return poolMax(this.pool)
  }

  /** whether connect() records its stack right now */
  get capturingStacks(): boolean {
    return this.stackMode === STACKS_ALWAYS || (this.stackMode === STACKS_ON_DEMAND && performance.now() < this.stacksUntil)
  }

  /** Stops reporting the gauges of this pool (pool.end() calls it); counters and histograms stay. */
  detach(): void {
    if (this.metrics.sources.get(this.poolName) === this) this.metrics.sources.delete(this.poolName)
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    this.sweeper = undefined
  }

  /** Patches the pool instance (connect, query, end); the prototype and other pools are untouched. */
  install(): void {
    const pool = this.pool as PatchedPool
    const originalConnect = pool.connect as unknown as Method
    const originalQuery = pool.query as unknown as Method
    const originalEnd = pool.end as unknown as Method
    const PromiseCtor = pool.Promise ?? Promise
    const self = this

    function connect(callback?: ConnectCallback): Promise<pg.PoolClient> | undefined {
      const now = performance.now()
      const convenience = self.convenienceDepth > 0
      let stack: CapturedStack | undefined
      if (!convenience && self.stackMode !== STACKS_NEVER && (self.stackMode === STACKS_ALWAYS || now < self.stacksUntil))
        stack = captureStack(connect)
      const checkout = new Checkout(self, now, convenience, stack)
      self.pending += 1
      if (!convenience && self.detectHeldDuringLlmCall) attachCheckout(checkout)
      if (typeof callback === 'function') {
        // a callback runs where pg calls it: bind it to the caller's context (with this checkout)
        const cb = convenience ? callback : AsyncResource.bind(callback)
        originalConnect.call(pool, (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => {
          const release = self.acquired(checkout, err, client)
          if (release === undefined) cb(err, undefined, done)
          else cb(undefined, client, release)
        })
        return undefined
      }
      // as pg-pool does: a failure's stack is re-captured in a reaction of the promise the
      // application awaits, where V8's async stack trace leads to its await, not to a socket
      return new PromiseCtor<pg.PoolClient>((resolve, reject) => {
        originalConnect.call(pool, (err: Error | undefined, client: pg.PoolClient | undefined) => {
          if (self.acquired(checkout, err, client) !== undefined) resolve(client!)
          else reject(err ?? new Error('pool.connect() failed without an error'))
        })
      }).catch(restack)
    }

    function query(): unknown {
      self.convenienceDepth += 1
      try {
        return originalQuery.apply(pool, arguments as unknown as unknown[])
      } finally {
        self.convenienceDepth -= 1
      }
    }

    function end(...args: unknown[]): unknown {
      self.detach()
      return originalEnd.apply(pool, args)
    }

    Object.assign(pool, { connect, query, end })
    pool[INSTRUMENTATION] = this
  }

  /** pg handed over a client (or an error): metrics, release wrapper, long-hold tracking. */
  private acquired(checkout: Checkout, err: Error | undefined, client: pg.PoolClient | undefined): ReleaseFn | undefined {
    this.pending -= 1
    if (err !== undefined || client === undefined) {
      checkout.state = CHECKOUT_FAILED
      detachCheckout(checkout)
      if (err !== undefined && TIMEOUT_MESSAGES.has(err.message)) this.timeouts.inc()
      return undefined
    }
    const now = performance.now()
    checkout.acquiredAt = now
    checkout.state = CHECKOUT_HELD
    this.observeWait((now - checkout.requestedAt) / 1000)
    const patched = client as PatchedClient
    checkout.backendPid = (client as { processID?: number | null }).processID ?? undefined
    const originalRelease = patched.release
    // pg's own release is a closure that works detached (`const { release } = client`): so is ours
    patched.release = (releaseErr?: Error | boolean) => {
      this.released(checkout, patched)
      return originalRelease(releaseErr)
    }
    if (!checkout.convenience) {
      patched[CLIENT_CHECKOUT] = checkout
      if (patched[QUERY_PATCHED] !== true) patchClientQuery(patched)
      if (this.longHoldMs > 0) {
        this.held.add(checkout)
        if (this.sweeper === undefined) this.startSweeper()
      }
    }
    return patched.release
  }

  private released(checkout: Checkout, client: PatchedClient): void {
    if (checkout.state !== CHECKOUT_HELD) return // a second release: pg throws on it
    checkout.state = CHECKOUT_RELEASED
    const heldMs = performance.now() - checkout.acquiredAt
    this.observeUse(heldMs / 1000)
    if (checkout.convenience) return
    detachCheckout(checkout)
    if (client[CLIENT_CHECKOUT] === checkout) client[CLIENT_CHECKOUT] = undefined
    if (this.longHoldMs > 0) {
      this.held.delete(checkout)
      // the sweeper did not get to it (event loop blocked, or between two sweeps)
      if (heldMs >= this.longHoldMs && !checkout.longHoldWarned) this.warnLongHold(checkout, heldMs, true)
    }
  }

  /**
   * One unref'd interval per pool, only while clients are held, instead of a timer per
   * checkout: it walks the held checkouts oldest first and stops at the first young one.
   */
  private startSweeper(): void {
    const period = Math.max(5, Math.min(1000, Math.floor(this.longHoldMs / 4)))
    this.sweeper = setInterval(() => {
      if (this.held.size === 0) {
        clearInterval(this.sweeper)
        this.sweeper = undefined
        return
      }
      const now = performance.now()
      for (const checkout of this.held) {
        const heldMs = now - checkout.acquiredAt
        if (heldMs < this.longHoldMs) break
        if (!checkout.longHoldWarned) this.warnLongHold(checkout, heldMs, false)
      }
    }, period)
    this.sweeper.unref()
  }

  describeCheckout(checkout: Checkout, now: number): HeldClientInfo {
    const frames = stackFrames(checkout.stack)
    return {
      poolName: this.poolName,
      heldMs: Math.round(now - checkout.acquiredAt),
      backendPid: checkout.backendPid,
      lastQuery: statementText(checkout.lastQuery, this.maxQueryTextLength, this.keepQueryLiterals),
      callSite: callSite(frames, this.stackIgnore),
      stack: frames.length > 0 ? frames.join('\n') : undefined,
    }
  }

  /** A stackless warning under on-demand stacks: capture them from now on, for the next occurrence. */
  private stackHint(checkout: Checkout): string {
    if (checkout.stack !== undefined || this.stackMode !== STACKS_ON_DEMAND) return ''
    this.stacksUntil = performance.now() + ON_DEMAND_WINDOW_MS
    return ' (acquiring stack not recorded: stacks are captured on demand and now are, so the next occurrence will show where the client was acquired)'
  }

  private siteKey(info: HeldClientInfo, fallback: string): string {
    return info.callSite !== undefined ? frameLocation(info.callSite) : `${fallback}|${info.lastQuery ?? ''}`
  }

  heldDuringLlmCall(operation: string, checkouts: readonly Checkout[], now: number, llmCallStack: CapturedStack | undefined): void {
    this.metrics.heldDuringLlmCall.inc({ [POOL_NAME_LABEL]: this.poolName, operation })
    for (const checkout of checkouts) {
      const info = this.describeCheckout(checkout, now)
      if (!this.heldSites.firstTime(this.siteKey(info, `llm:${operation}`))) continue
      const llmFrames = stackFrames(llmCallStack)
      const warning: PoolWarning = {
        event: 'db_connection_held_during_llm_call',
        operation,
        ...info,
        llmCallStack: llmFrames.length > 0 ? llmFrames.join('\n') : undefined,
      }
      this.logger.warn(
        warning,
        `connection from pool "${this.poolName}" held during LLM call "${operation}": checked out ${info.heldMs} ms earlier${info.callSite ? ` ${info.callSite}` : ''} and not released; release it before calling the LLM${this.stackHint(checkout)}`,
      )
    }
  }

  private warnLongHold(checkout: Checkout, heldMs: number, released: boolean): void {
    checkout.longHoldWarned = true
    const info = this.describeCheckout(checkout, checkout.acquiredAt + heldMs)
    if (!this.longHoldSites.firstTime(this.siteKey(info, 'long-hold'))) return
    const warning: PoolWarning = { event: 'db_connection_long_hold', released, longHoldMs: this.longHoldMs, ...info }
    this.logger.warn(
      warning,
      `connection from pool "${this.poolName}" ${released ? 'was held' : 'has been held'} for ${info.heldMs} ms (longHoldMs ${this.longHoldMs})${released ? ' before release' : ' and is still checked out'}${info.callSite ? `; acquired ${info.callSite}` : ''}${this.stackHint(checkout)}`,
    )
  }
}

/** The most connections a pg.Pool may open: its max option, or pg-pool's default of 10. */
export function poolMax(pool: pg.Pool): number {
  return pool.options.max ?? 10
}

function restack(error: Error): never {
  Error.captureStackTrace(error, restack)
  throw error
}

/** Records the text (never the values) of each statement run on a client checked out by connect(). */
function patchClientQuery(client: PatchedClient): void {
  const originalQuery = client.query as unknown as Method
  Object.assign(client, {
    [QUERY_PATCHED]: true,
    query(this: PatchedClient, first: unknown): unknown {
      const checkout = this[CLIENT_CHECKOUT]
      if (checkout !== undefined) {
        checkout.lastQuery = typeof first === 'string' ? first : ((first as { text?: unknown } | null)?.text as string | undefined)
      }
      // apply(arguments): passes exactly what the caller passed, without allocating an array
      return originalQuery.apply(this, arguments as unknown as unknown[])
    },
  })
}
