import type { HeldClientInfo } from './held-detector.js'

/** The fields of a pool warning (camelCase, stable): what a pino logger receives as its object. */
export interface PoolWarning extends HeldClientInfo {
  event: 'db_connection_held_during_llm_call' | 'db_connection_long_hold'
  /** the llmCall() operation (held during LLM call) */
  operation?: string
  /** long hold: whether the client had been released when the warning was made */
  released?: boolean
  longHoldMs?: number
  /** held during LLM call: the stack of the llmCall() that found the client held */
  llmCallStack?: string
}

/** pino-compatible: `pino()` or `fastify.log` can be passed as is. */
export interface PoolLogger {
  warn(details: PoolWarning, message: string): void
}

/** The default logger: one readable block on stderr per warning, with the acquiring stack. */
export const consoleLogger: PoolLogger = {
  warn(details, message) {
    const lines = [`warden: ${message}`]
    if (details.lastQuery !== undefined) lines.push(`  last query: ${details.lastQuery}`)
    if (details.stack !== undefined) lines.push('  acquired at:', ...details.stack.split('\n').map((frame) => `    ${frame}`))
    if (details.llmCallStack !== undefined) lines.push('  LLM call at:', ...details.llmCallStack.split('\n').map((frame) => `    ${frame}`))
    console.warn(lines.join('\n'))
  },
}
