import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { insertLlmRequests, type CostRow } from '../db/queries/chat.js'
import { runOnce } from './db.js'
import { isTransientDatabaseError } from './errors.js'
import type { ChatMetrics } from './metrics.js'
import { costUsd, type CallUsage, type Pricing } from './usage.js'

/** pino-compatible; see ChatLogger in router.ts */
interface Logger {
  warn(details: object, message: string): void
  error(details: object, message: string): void
}

export interface WriteRetry {
  /** how long writes are retried while the database is unreachable; 0: once */
  budgetMs: number
  logger: Logger
  /** true once waiting is pointless (the server is past its shutdown grace): fail at once */
  giveUp?: () => boolean
}

const FIRST_DELAY_MS = 100
const MAX_DELAY_MS = 2000

/**
 * Runs a write, and again with a doubling delay while it fails for a reason that may pass (the
 * database restarting, a failover, a full pool) until `budgetMs` is spent. Every retry is logged
 * (event chat_write_retry). `attempt` lets the write tell a first try from a retry.
 */
export async function retryingWrite<T>(what: string, retry: WriteRetry, write: (attempt: number) => Promise<T>): Promise<T> {
  const started = performance.now()
  let delay = FIRST_DELAY_MS
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await write(attempt)
    } catch (error) {
      const left = retry.budgetMs - (performance.now() - started)
      if (!isTransientDatabaseError(error) || left <= 0 || retry.giveUp?.()) throw error
      const wait = Math.min(delay, left)
      retry.logger.warn(
        { event: 'chat_write_retry', write: what, attempt, retryInMs: Math.round(wait), err: error },
        `the ${what} write failed (database unreachable?); retrying`,
      )
      await sleep(wait)
      if (retry.giveUp?.()) throw error
      delay = Math.min(delay * 2, MAX_DELAY_MS)
    }
  }
}

export interface LedgerContext {
  pool: pg.Pool
  schema: string
  sessionId: string
  model: string
  provider: string
  pricing: Pricing
  metrics: ChatMetrics
  retry: WriteRetry
}

export interface CallRecord {
  requestId: string | null
  usage: CallUsage
  latencyMs: number
  status: 'ok' | 'error'
  errorType: string | null
}

/**
 * The cost rows of one turn, from the moment each call returns until its row is in
 * llm_requests. Every call the turn made is written exactly once: with the turn's own write
 * when that succeeds (same transaction), else on its own by `settle()`, which retries while the
 * database is away and, when it cannot, reports the row as lost: a counted metric
 * (warden_llm_cost_rows_lost_total) and an error log line with the provider request id and the
 * usage, so billing can be reconciled by hand. call_id makes a retried write idempotent.
 */
export class CostLedger {
  private readonly rows: Array<{ row: CostRow; recorded: boolean }> = []

  constructor(private readonly ctx: LedgerContext) {}

  add(call: CallRecord): CostRow {
    const row: CostRow = {
      callId: randomUUID(),
      requestId: call.requestId,
      operation: 'chat',
      model: this.ctx.model,
      ...call.usage,
      costUsd: costUsd(this.ctx.pricing, call.usage),
      latencyMs: call.latencyMs,
      status: call.status,
      errorType: call.errorType,
    }
    this.rows.push({ row, recorded: false })
    return row
  }

  pending(): CostRow[] {
    return this.rows.filter((r) => !r.recorded).map((r) => r.row)
  }

  markRecorded(rows: readonly CostRow[]): void {
    const ids = new Set(rows.map((row) => row.callId))
    for (const entry of this.rows) if (ids.has(entry.row.callId)) entry.recorded = true
  }

  /** One try on its own connection (a tool round's call, beside its tools); a failure leaves it for the turn's write. */
  async tryRecord(row: CostRow): Promise<void> {
    try {
      await runOnce(this.ctx.pool, insertLlmRequests(this.ctx.schema, this.ctx.sessionId, [row]))
      this.markRecorded([row])
    } catch (error) {
      this.ctx.retry.logger.warn(
        { event: 'chat_write_deferred', callId: row.callId, requestId: row.requestId, err: error },
        'could not write a tool round cost row; it goes with the turn',
      )
    }
  }

  /** The turn ends without its write: every row still pending, on its own, retried; what cannot be written is reported lost. */
  async settle(): Promise<void> {
    const rows = this.pending()
    if (rows.length === 0) return
    try {
      await retryingWrite('cost rows', this.ctx.retry, () =>
        runOnce(this.ctx.pool, insertLlmRequests(this.ctx.schema, this.ctx.sessionId, rows)),
      )
      this.markRecorded(rows)
    } catch (error) {
      for (const row of rows) this.lost(row, error)
    }
  }

  private lost(row: CostRow, error: unknown): void {
    this.ctx.metrics.costRowsLost.inc({ gen_ai_provider_name: this.ctx.provider, gen_ai_request_model: row.model })
    const { callId, requestId, model, inputTokens, cacheReadInputTokens, cacheCreationInputTokens, outputTokens, status, errorType } = row
    this.ctx.retry.logger.error(
      {
        event: 'llm_cost_lost',
        sessionId: this.ctx.sessionId,
        callId,
        requestId,
        model,
        inputTokens,
        cacheReadInputTokens,
        cacheCreationInputTokens,
        outputTokens,
        costUsd: row.costUsd,
        status,
        errorType,
        err: error,
      },
      'lost the llm_requests row of an LLM call: the database stayed unreachable; reconcile this call by its request id',
    )
  }
}
