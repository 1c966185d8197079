import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './cli.js'
import type { TestDatabase } from './db.js'

export interface OtelApp {
  child: ChildProcess
  /** its /metrics port */
  port: number
  stop: () => Promise<void>
}

/**
 * Starts test/fixtures/otel-pg-app.ts against the test database; resolves once /metrics is
 * served. `env` picks the workload (APP_MODE, POOL_MAX, WORKERS, APP_NAME, LLM_URL).
 */
export async function startOtelApp(t: TestDatabase, env: Record<string, string> = {}): Promise<OtelApp> {
  const url = new URL(t.url)
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fixtures', 'otel-pg-app.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      PGHOST: url.hostname,
      PGPORT: url.port,
      PGUSER: decodeURIComponent(url.username),
      PGPASSWORD: decodeURIComponent(url.password),
      PGDATABASE: url.pathname.slice(1),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the OpenTelemetry app did not start in 30 s:\n${output}`)), 30_000)
    const onData = (chunk: Buffer) => {
      output += String(chunk)
      const match = /listening (\d+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the OpenTelemetry app exited with ${code}:\n${output}`))
    })
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  return { child, port, stop }
}
