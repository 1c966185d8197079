import { acquireCheck } from '../db/queries/activity.js'
import { closeQuietly, elapsedMs, errorCode, errorMessage, freshClient, TIMED_OUT, withDeadline } from './fresh-client.js'

export type AcquireOutcome = 'ok' | 'timeout' | 'too_many_clients' | 'refused' | 'auth_failed' | 'error'

export interface AcquireProbeOptions {
  /** deadline over connect + SELECT 1, in ms (default 5000) */
  timeoutMs?: number
  /** default 'warden-probe', so the probe's own connection is recognisable in pg_stat_activity */
  applicationName?: string
}

export interface AcquireProbe {
  outcome: AcquireOutcome
  /** time to an open session; null when the connect did not complete */
  connectMs: number | null
  /** time of SELECT 1 on it; null when it did not complete */
  queryMs: number | null
  /** time to the outcome, whichever it was */
  totalMs: number
  timeoutMs: number
  /** where it stopped: 'connect' or 'query' (for ok: 'query') */
  phase: 'connect' | 'query'
  /** SQLSTATE (53300, 28P01, …) or socket errno (ECONNREFUSED, …) */
  code: string | null
  /** the server's or the socket's own words; null when ok */
  message: string | null
}

export const DEFAULT_ACQUIRE_TIMEOUT_MS = 5000
export const PROBE_APPLICATION_NAME = 'warden-probe'

function classify(code: string | undefined, message: string): AcquireOutcome {
  if (code === '53300') return 'too_many_clients'
  if (code === '28P01' || code === '28000') return 'auth_failed'
  if (code === 'ECONNREFUSED') return 'refused'
  if (code === 'ETIMEDOUT' || /timeout expired/i.test(message)) return 'timeout'
  return 'error'
}

/**
 * What a new connection costs right now: one fresh session (never a pooled one, which would hide
 * the wait an application sees when it opens a connection), SELECT 1, under a deadline. Every
 * failure is a finding with its outcome, never an exception.
 */
export async function probeAcquire(url: string | undefined, options: AcquireProbeOptions = {}): Promise<AcquireProbe> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS
  const client = freshClient(url, options.applicationName ?? PROBE_APPLICATION_NAME)
  const started = performance.now()
  let connectMs: number | null = null
  let queryMs: number | null = null
  let phase: AcquireProbe['phase'] = 'connect'
  const finding = (outcome: AcquireOutcome, code: string | null, message: string | null): AcquireProbe => ({
    outcome,
    connectMs,
    queryMs,
    totalMs: elapsedMs(started),
    timeoutMs,
    phase,
    code,
    message,
  })

  const work = (async () => {
    await client.connect()
    connectMs = elapsedMs(started)
    phase = 'query'
    const queryStarted = performance.now()
    await client.query(acquireCheck().text)
    queryMs = elapsedMs(queryStarted)
  })()
  let timedOut = false
  try {
    const result = await withDeadline(work, timeoutMs)
    timedOut = result === TIMED_OUT
    if (result === TIMED_OUT) {
      return finding('timeout', null, `no ${phase === 'connect' ? 'session' : 'answer to SELECT 1'} within ${timeoutMs} ms`)
    }
    return finding('ok', null, null)
  } catch (error) {
    const code = errorCode(error)
    const message = errorMessage(error)
    return finding(classify(code, message), code ?? null, message)
  } finally {
    await closeQuietly(client, timedOut)
  }
}
