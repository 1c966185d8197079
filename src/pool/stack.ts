import { dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** This directory: frames of the instrumentation itself are never the call site. */
const OWN_DIR = dirname(fileURLToPath(import.meta.url))
const OWN_DIR_URL = pathToFileURL(OWN_DIR).href

/** Frames that are never the application's call site: the driver, other packages, Node itself. */
export const DEFAULT_STACK_IGNORE: readonly RegExp[] = Object.freeze([
  /[\\/]node_modules[\\/]/,
  /\(node:/,
  /^\s*at (async )?node:/,
  /\(internal\//,
])

/** A captured, not yet formatted stack: V8 only formats it when `.stack` is read. */
export interface CapturedStack {
  stack?: string
}

/**
 * Captures the current stack cheaply: V8 records the frames, the string is built lazily on
 * first read (only when a warning is logged). `below` and everything above it are left out.
 */
export function captureStack(below: (...args: never[]) => unknown): CapturedStack {
  const holder: CapturedStack = {}
  Error.captureStackTrace(holder, below)
  return holder
}

function isOwnFrame(line: string): boolean {
  return line.includes(OWN_DIR) || line.includes(OWN_DIR_URL)
}

/** The "at …" lines of a captured stack, without this module's own frames. */
export function stackFrames(captured: CapturedStack | undefined): string[] {
  const text = captured?.stack
  if (typeof text !== 'string') return []
  const frames: string[] = []
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (trimmed.startsWith('at ') && !isOwnFrame(trimmed)) frames.push(trimmed)
  }
  return frames
}

/** The location part of a frame: `/app/src/chat.ts:42:17` of `at handler (/app/src/chat.ts:42:17)`. */
export function frameLocation(frame: string): string {
  const open = frame.lastIndexOf('(')
  const location = open >= 0 && frame.endsWith(')') ? frame.slice(open + 1, -1) : frame.replace(/^at (async )?/, '')
  return location
}

/**
 * The application frame that acquired the client: the first frame outside node_modules (pg,
 * pg-pool, ORMs), Node internals, this module and `ignore`. Falls back to the first frame.
 */
export function callSite(frames: readonly string[], ignore: readonly RegExp[]): string | undefined {
  for (const frame of frames) {
    if (!ignore.some((pattern) => pattern.test(frame))) return frame
  }
  return frames[0]
}

/**
 * Statement text for logs: whitespace folded, string literals replaced by '?' unless
 * `keepLiterals` (an app that inlines values instead of binding them would otherwise log
 * them), truncated to `max` characters. Bind values are never captured at all.
 */
export function statementText(text: string | undefined, max: number, keepLiterals = false): string | undefined {
  if (typeof text !== 'string') return undefined
  let flat = text.replace(/\s+/g, ' ').trim()
  if (!keepLiterals) flat = flat.replace(/'(?:[^']|'')*'/g, "'?'").replace(/\$([A-Za-z_]*)\$[\s\S]*?\$\1\$/g, "'?'")
  return flat.length > max ? `${flat.slice(0, max)}…` : flat
}
