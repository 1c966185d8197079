import type pg from 'pg'
import { formatDuration } from '../core/duration.js'
import { usageError, type WardenError } from '../core/errors.js'
import type { Database } from '../db/database.js'
import { clockSkew } from '../db/queries/sessions.js'
import type { SessionTable } from '../db/session-table.js'

/** Values more than this far ahead of the server's clock are not clock jitter. */
const FUTURE_TOLERANCE_SECONDS = 60
/** Zone offsets are whole quarter hours (UTC+5:45 included), up to 14 h. */
const OFFSET_STEP_SECONDS = 15 * 60
const MAX_OFFSET_SECONDS = 14 * 3600
/** How far from a whole offset the newest sign of life may be: an active app writes every few seconds. */
const OFFSET_TOLERANCE_SECONDS = 120

export interface SkewVerdict {
  warnings: string[]
  /** the sweep would close live sessions if the suspicion is right: refused unless forced */
  refusal?: WardenError
}

/**
 * `timestamp without time zone` values are wall-clock times: an app writing them in New York
 * into a UTC server makes every session look five hours silent, and a sweep would close them
 * all. Nothing in the row says which zone was meant, so Warden looks at the newest sign of life
 * among open sessions: in the future, or silent for a whole number of quarter hours while
 * longer than orphanAfter (every open session an "orphan"), is what a zone mismatch looks like.
 * A mapping that declares `columnsTimeZone` is taken at its word.
 */
export async function checkClockSkew(
  db: Database,
  client: pg.PoolClient,
  table: SessionTable,
  orphanAfterSeconds: number,
): Promise<SkewVerdict> {
  const [row] = await db.rows<{ newestSilenceSeconds: number | null; open: string }>(clockSkew(table), client)
  const silence = row?.newestSilenceSeconds
  if (silence === null || silence === undefined || Number(row!.open) === 0) return { warnings: [] }
  const column = table.config.columns.lastSeenAt ?? table.config.columns.startedAt
  const naive = table.naiveColumns.size > 0 && table.zone === undefined
  const fix = naive
    ? `it is \`timestamp without time zone\`: if the application writes it in another zone than the server's TimeZone, declare that zone as sessions.columnsTimeZone (e.g. America/New_York)`
    : `check the clock of the application that writes it`
  if (silence < -FUTURE_TOLERANCE_SECONDS) {
    return {
      warnings: [
        `the newest ${column} of an open session is ${formatDuration(-silence)} in the future by the server's clock; ${fix}. Orphans are judged by that column, so some are found late`,
      ],
    }
  }
  const offset = Math.round(silence / OFFSET_STEP_SECONDS) * OFFSET_STEP_SECONDS
  const looksLikeAZone = offset > 0 && offset <= MAX_OFFSET_SECONDS && Math.abs(silence - offset) <= OFFSET_TOLERANCE_SECONDS
  if (naive && looksLikeAZone && silence > orphanAfterSeconds) {
    return {
      warnings: [],
      refusal: usageError(
        `every one of the ${row!.open} open session(s) has been silent for at least ${formatDuration(silence)}, within ${OFFSET_TOLERANCE_SECONDS} s of a whole time-zone offset (${formatDuration(offset)}): ${column} is \`timestamp without time zone\`, and an application writing it in another zone would make live sessions look like orphans; declare sessions.columnsTimeZone, or pass --force (API: "force": true) if they really are all silent`,
      ),
    }
  }
  return { warnings: [] }
}
