import type { Request } from 'express'
import { ChatError } from './errors.js'

/**
 * What the chat routes accept, checked before anything is read, called or written. Text that
 * PostgreSQL cannot store is refused here with the field's name: a NUL (text and jsonb have no
 * room for U+0000) and a lone UTF-16 surrogate (no UTF-8 form: the driver would store U+FFFD,
 * silently another id). Letting either through would fail the turn's write after the LLM call
 * was made and billed.
 */

export const MAX_ID_LENGTH = 200
export const MAX_LABEL_LENGTH = 200
// eslint-disable-next-line no-control-regex -- ids must not carry control characters
const CONTROL = /[\u0000-\u001f\u007f]/
/** Code units, not code points (no u flag): a high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

const invalid = (field: string, expected: string) => new ChatError(400, 'invalid_request', `${field}: ${expected}`)

/** Refuses text PostgreSQL cannot store, naming the field and where in it the offending character is. */
export function assertStorable(field: string, value: string): string {
  const nul = value.indexOf('\u0000')
  if (nul >= 0) throw invalid(field, `contains a NUL character (U+0000) at position ${nul}, which PostgreSQL cannot store; remove it`)
  const lone = LONE_SURROGATE.exec(value)
  if (lone) {
    const at = lone.index
    const unit = value.charCodeAt(at).toString(16).toUpperCase()
    throw invalid(
      field,
      `contains a lone UTF-16 surrogate (U+${unit}) at position ${at}, which has no UTF-8 form; send well-formed Unicode`,
    )
  }
  return value
}

export function bodyOf(req: Request): Record<string, unknown> {
  const body: unknown = req.body
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body)) throw invalid('body', 'expected a JSON object as the request body')
  return body as Record<string, unknown>
}

export function sessionId(value: unknown, field: string): string {
  if (typeof value === 'string') assertStorable(field, value)
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH || CONTROL.test(value))
    throw invalid(field, `expected a session id of 1 to ${MAX_ID_LENGTH} printable characters`)
  return value
}

export const MAX_MESSAGES_LIMIT = 10_000

/** ?limit of the message list: absent means the first 1,000; anything but a whole number in range is refused. */
export function messagesLimit(value: unknown): number {
  if (value === undefined) return 1000
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : Number.NaN
  if (!(n >= 1 && n <= MAX_MESSAGES_LIMIT))
    throw invalid('limit', `expected a whole number from 1 to ${MAX_MESSAGES_LIMIT}, got ${JSON.stringify(value)}`)
  return n
}

export function optionalText(body: Record<string, unknown>, key: string): string | null {
  const value = body[key]
  if (value === undefined || value === null) return null
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_LABEL_LENGTH)
    throw invalid(key, `expected a non-empty string of at most ${MAX_LABEL_LENGTH} characters`)
  return assertStorable(key, value)
}

export function messageText(body: Record<string, unknown>, maxBytes: number): string {
  const message = body.message
  if (typeof message !== 'string' || message.trim() === '') throw invalid('message', 'expected a non-empty string')
  const bytes = Buffer.byteLength(message, 'utf8')
  if (bytes > maxBytes) throw new ChatError(413, 'message_too_large', `message: ${bytes} bytes; the limit is ${maxBytes}`)
  return assertStorable('message', message)
}

/** express answers a path it cannot percent-decode with a bare 400 "Failed to decode param"; say which part it was. */
export const undecodablePath = (message: string) =>
  invalid(
    'path id',
    `${message.replace(/^Failed to decode param/, 'cannot percent-decode')}; a session id in the path must be percent-encoded UTF-8`,
  )
