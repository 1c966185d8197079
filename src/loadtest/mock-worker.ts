import { parentPort, workerData } from 'node:worker_threads'
import { startMockLlm, type MockLlmOptions } from '../llm/mock-server.js'
import { threadCpuMs } from './cpu.js'

/** Thread entry: the mock LLM for a load test (see threads.ts). */
const server = await startMockLlm(workerData as MockLlmOptions)
parentPort!.postMessage({ url: server.url })
parentPort!.on('message', (message) => {
  if (message === 'cpu') parentPort!.postMessage({ cpuMs: threadCpuMs() })
  if (message !== 'stop') return
  void server.close().then(() => {
    parentPort!.postMessage({ stats: server.stats() })
    parentPort!.close()
  })
})
