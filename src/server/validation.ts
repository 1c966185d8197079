import type { Request } from 'express'
import { z, type ZodTypeAny } from 'zod'
import { durationSchema } from '../core/config-schema.js'
import { SESSION_STATES } from '../sessions/operations.js'
import { isEmptyFilter, type BulkCloseFilter } from '../sessions/sweep.js'
import { ApiError, validationError } from './errors.js'

const inRange = (number: z.ZodNumber, min: number, max: number) => {
  const expected = `expected an integer from ${min} to ${max}`
  return number.int(expected).min(min, expected).max(max, expected)
}
/** Query parameters are strings: "100" is fine there. */
const intFrom = (min: number, max: number) =>
  inRange(z.coerce.number({ invalid_type_error: `expected an integer from ${min} to ${max}` }), min, max)
/** Body integers must be JSON numbers: "100" in a JSON body is a client bug worth a 400. */
const bodyInt = (min: number, max: number) =>
  inRange(z.number({ invalid_type_error: `expected an integer from ${min} to ${max}` }), min, max)

/** "7d", "90m", or a number of seconds: the CLI's duration syntax. */
const duration = durationSchema

/** ?group=a&group=b arrives as an array, ?group=a as a string. */
const repeated = (item: ZodTypeAny, max: number) =>
  z.preprocess(
    (value) => (value === undefined || Array.isArray(value) ? value : [value]),
    z.array(item).max(max, `expected at most ${max} values`).optional(),
  )

const name = z.string().min(1, 'expected a non-empty string').max(200, 'expected at most 200 characters')
const queryBoolean = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1')

/** Offset paging reads and skips the rows before the page: bounded, so a deep page cannot cost a table scan. */
export const MAX_OFFSET = 10_000

/** ?target= and ?table= (or the body's): needed when the service watches several tables. */
const selection = { target: name.optional(), table: name.optional() }

export const listQuery = z
  .object({
    ...selection,
    state: z.enum(SESSION_STATES).default('active'),
    group: repeated(name, 100),
    since: duration.default('24h'),
    limit: intFrom(1, 1000).default(50),
    offset: intFrom(0, MAX_OFFSET).default(0),
  })
  .strict()

export const statsQuery = z.object({ ...selection, days: intFrom(1, 3660).default(7), byGroup: queryBoolean.default('false') }).strict()

export const checksQuery = z.object({ target: name.optional(), check: repeated(name, 50) }).strict()

export const poolQuery = z
  .object({ target: name.optional(), longTransaction: duration.default('1m'), queryLength: intFrom(1, 10_000).default(200) })
  .strict()

const runOptions = {
  ...selection,
  /** false or absent: a dry run (reports, audits, changes nothing) */
  apply: z.boolean({ invalid_type_error: 'expected true or false' }).default(false),
  /** apply despite a refusable hazard (orphanAfter below the floor, naive timestamps that look like another zone) */
  force: z.boolean({ invalid_type_error: 'expected true or false' }).default(false),
  batchSize: bodyInt(1, 100_000).optional(),
  maxRows: bodyInt(1, Number.MAX_SAFE_INTEGER).optional(),
  sample: bodyInt(0, 1000).default(5),
}

export const sweepBody = z.object(runOptions).strict()

/** The CLI's `sessions close` rules, with the API's field names. */
export const closeBody = z
  .object({
    ...runOptions,
    all: z.boolean({ invalid_type_error: 'expected true or false' }).default(false),
    olderThan: duration.optional(),
    groups: z.array(name).min(1, 'expected at least one group').max(100, 'expected at most 100 groups').optional(),
    // bigint ids may arrive as JSON numbers; the database casts the text to the column's type. A
    // number beyond 2^53 - 1 has already been rounded by JSON.parse: it may name another session.
    ids: z
      .array(
        z
          .union([
            name,
            z
              .number()
              .int()
              .refine(Number.isSafeInteger, (value) => ({
                message: `${value} is beyond 2^53 - 1, where JSON numbers lose precision (it may already name another session): send ids as strings, e.g. "9007199254740993"`,
              })),
          ])
          .transform(String),
      )
      .min(1, 'expected at least one id')
      .max(10_000, 'expected at most 10000 ids')
      .optional(),
  })
  .strict()
  .transform((body, ctx) => {
    const filter: BulkCloseFilter = { all: body.all, olderThanSeconds: body.olderThan, groups: body.groups, ids: body.ids }
    if (body.all && !isEmptyFilter(filter)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['all'],
        message: 'closes every open session and cannot be combined with olderThan, groups or ids',
      })
    } else if (!body.all && isEmptyFilter(filter)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'a filter is required: {"all": true}, olderThan (e.g. "7d"), groups or ids' })
    }
    return { ...body, filter }
  })

/** NUL and unpaired UTF-16 surrogates: text PostgreSQL cannot store or compare, refused before any statement runs. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** The path of the first string (key or value) PostgreSQL could not take, if any. */
export function unstorablePath(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return UNSTORABLE.test(value) ? path : undefined
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = unstorablePath(item, `${path}[${index}]`)
      if (found) return found
    }
    return undefined
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const at = path ? `${path}.${key}` : key
      if (UNSTORABLE.test(key)) return at
      const found = unstorablePath(item, at)
      if (found) return found
    }
  }
  return undefined
}

function refuseUnstorable(value: unknown, where: string): void {
  const path = unstorablePath(value, '')
  if (path !== undefined) {
    throw new ApiError(
      400,
      'invalid_request',
      `${path || where}: contains a NUL character or an unpaired UTF-16 surrogate, which PostgreSQL text cannot hold`,
    )
  }
}

export function parseQuery<S extends ZodTypeAny>(schema: S, req: Request): z.output<S> {
  refuseUnstorable(req.query, 'query')
  const result = schema.safeParse(req.query)
  if (!result.success) throw validationError(result.error, 'query parameter')
  return result.data as z.output<S>
}

/**
 * Mutations take JSON. An empty body is an empty object (a dry-run sweep needs no body), but a
 * body in another media type is refused rather than ignored: curl -d sends a form by default,
 * and silently treating `apply=true` as a dry run would surprise the operator just as much.
 */
export function parseBody<S extends ZodTypeAny>(schema: S, req: Request): z.output<S> {
  const hasBody = Number(req.get('content-length') ?? 0) > 0 || req.get('transfer-encoding') !== undefined
  if (hasBody && !req.is('application/json')) throw new ApiError(415, 'unsupported_media_type', 'send the request body as application/json')
  const body: unknown = req.body ?? {}
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError(400, 'invalid_request', 'body: expected a JSON object')
  refuseUnstorable(body, 'body')
  const result = schema.safeParse(body)
  if (!result.success) throw validationError(result.error, 'field')
  return result.data as z.output<S>
}
