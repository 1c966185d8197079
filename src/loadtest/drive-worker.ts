import { parentPort, workerData } from 'node:worker_threads'
import { threadCpuMs } from './cpu.js'
import { drive, type DriveOptions } from './drive.js'

/** Thread entry: the virtual users of a load test (see threads.ts). */
const abort = new AbortController()
parentPort!.on('message', (message) => {
  if (message === 'abort') abort.abort()
})
try {
  const before = threadCpuMs()
  const result = await drive({ ...(workerData as DriveOptions), signal: abort.signal, onTick: (tick) => parentPort!.postMessage({ tick }) })
  const after = threadCpuMs()
  parentPort!.postMessage({ result, cpuMs: before === null || after === null ? null : after - before })
} catch (error) {
  parentPort!.postMessage({ error: (error as Error).message })
}
parentPort!.close()
