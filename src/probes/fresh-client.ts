import pg from 'pg'

/**
 * Probes that connect on their own (the timed acquire, the PgBouncer console) share this: a
 * fresh pg.Client that is never part of a pool, a hard deadline over connect and queries, and
 * errors classified into findings instead of thrown.
 */

export const TIMED_OUT = Symbol('timed out')

/** Resolves to TIMED_OUT when `ms` pass first; the work's own later rejection is swallowed. */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms)
  })
  work.catch(() => undefined)
  try {
    return await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
  }
}

export function freshClient(url: string | undefined, applicationName: string): pg.Client {
  const client = new pg.Client({ connectionString: url, application_name: applicationName })
  // A server that drops us after the deadline must not crash the process with an unhandled 'error'.
  client.on('error', () => undefined)
  return client
}

/**
 * Ends a client. After a deadline the socket is destroyed first: pg's end() mid-handshake sends
 * Terminate and waits for the server to close, which a hung server never does.
 */
export async function closeQuietly(client: pg.Client, force = false): Promise<void> {
  if (force) (client as unknown as { connection?: { stream?: { destroy: () => void } } }).connection?.stream?.destroy()
  await withDeadline(
    client.end().catch(() => undefined),
    1000,
  )
}

/** The SQLSTATE or socket errno of a driver error; "localhost" fails as an AggregateError of ::1 and 127.0.0.1. */
export function errorCode(error: unknown): string | undefined {
  const err = error as { code?: unknown; errors?: Array<{ code?: unknown }> }
  if (typeof err.code === 'string') return err.code
  const inner = err.errors?.map((e) => e.code).find((code) => typeof code === 'string')
  return typeof inner === 'string' ? inner : undefined
}

export function errorMessage(error: unknown): string {
  const err = error as { message?: string; errors?: Array<{ message?: string }> }
  return (
    err.message ||
    err.errors
      ?.map((e) => e.message)
      .filter(Boolean)
      .join('; ') ||
    String(error)
  )
}

export const elapsedMs = (since: number) => Math.round((performance.now() - since) * 10) / 10
