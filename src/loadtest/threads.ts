import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { MockLlmOptions, MockLlmStats } from '../llm/mock-server.js'
import type { DriveOptions, DriveResult, DriveSnapshot } from './drive.js'

/**
 * The load generator and the mock LLM each get their own thread: in production they are other
 * machines, and on a small box sharing the chat server's event loop with them would measure
 * their CPU instead of the chat path's. Messages: {url} | {tick} | {result} | {stats} | {error}.
 */

const SOURCE_EXT = extname(fileURLToPath(import.meta.url))

/**
 * The worker's file next to this one: .js in dist; .ts under tsx (dev, bench), whose loader
 * hooks Node 20 does not pass on to worker threads, so the worker registers them first.
 */
function newWorker(name: string, workerData: unknown): Worker {
  const url = new URL(`./${name}${SOURCE_EXT}`, import.meta.url)
  if (SOURCE_EXT !== '.ts') return new Worker(url, { workerData })
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}) })`
  return new Worker(bootstrap, { eval: true, workerData })
}

type WorkerMessage = {
  url?: string
  tick?: DriveSnapshot
  result?: DriveResult
  stats?: MockLlmStats
  cpuMs?: number | null
  error?: string
}

function start(name: string, data: unknown, onMessage: (message: WorkerMessage) => void): { worker: Worker; exited: Promise<void> } {
  const worker = newWorker(name, data)
  worker.on('message', onMessage)
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  worker.on('error', (error) => onMessage({ error: error.message }))
  return { worker, exited }
}

export interface MockThread {
  url: string
  /** CPU the mock's thread has used so far (Linux), for per-run deltas */
  cpuMs(): Promise<number | null>
  close(): Promise<MockLlmStats | undefined>
}

export function startMockThread(options: MockLlmOptions): Promise<MockThread> {
  return new Promise((resolve, reject) => {
    let stats: (value: MockLlmStats | undefined) => void = () => undefined
    let cpu: (value: number | null) => void = () => undefined
    const { worker, exited } = start('mock-worker', options, (message) => {
      if (message.error) reject(new Error(`mock LLM thread: ${message.error}`))
      if (message.stats) stats(message.stats)
      if (message.cpuMs !== undefined) cpu(message.cpuMs)
      if (message.url) {
        resolve({
          url: message.url,
          cpuMs() {
            const answer = new Promise<number | null>((r) => (cpu = r))
            worker.postMessage('cpu')
            return answer
          },
          async close() {
            const final = new Promise<MockLlmStats | undefined>((r) => (stats = r))
            worker.postMessage('stop')
            await exited
            stats(undefined)
            return final
          },
        })
      }
    })
    void exited.then(() => reject(new Error('the mock LLM thread exited before it listened')))
  })
}

/** drive() in its own thread; `signal` stops it the way it stops drive(). cpuMs: the thread's CPU during the run. */
export function driveInThread(
  options: Omit<DriveOptions, 'signal' | 'onTick'>,
  signal: AbortSignal | undefined,
  onTick: ((s: DriveSnapshot) => void) | undefined,
): Promise<DriveResult & { cpuMs: number | null }> {
  return new Promise((resolve, reject) => {
    const { worker, exited } = start('drive-worker', options, (message) => {
      if (message.tick) onTick?.(message.tick)
      if (message.result) resolve({ ...message.result, cpuMs: message.cpuMs ?? null })
      if (message.error) reject(new Error(`load generator thread: ${message.error}`))
    })
    const stop = () => worker.postMessage('abort')
    signal?.addEventListener('abort', stop, { once: true })
    void exited.then(() => {
      signal?.removeEventListener('abort', stop)
      reject(new Error('the load generator thread exited without a result'))
    })
  })
}
