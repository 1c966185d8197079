import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../src/embedded/embedded-postgres.js'
import { installCommand, PROMETHEUS_BIN, PROMTOOL_BIN } from '../setup/peers.js'
import { sleep } from './wait.js'

/** Debian's `prometheus` package ships both; the global setup installs it (test/setup/peers.ts). */
export const PROMETHEUS = PROMETHEUS_BIN
export const PROMTOOL = PROMTOOL_BIN

/** Fails (never skips) with what to do when a binary is missing. */
export function requireBinary(path: string): string {
  if (!existsSync(path)) {
    throw new Error(
      `${path} not found: npm test installs Debian's "prometheus" package (prometheus and promtool) when run as root; otherwise: ${installCommand(['prometheus'])}`,
    )
  }
  return path
}

/** `promtool check metrics` on an exposition: its exit code and the problems it lists, one per line. */
export function promtoolCheckMetrics(text: string): { code: number | null; problems: string[] } {
  const result = spawnSync(requireBinary(PROMTOOL), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 })
  const problems = `${result.stdout}\n${result.stderr}`
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
  return { code: result.status, problems }
}

export interface RunningPrometheus {
  url: string
  /** an instant query through /api/v1/query: the vector's samples */
  query: (expr: string) => Promise<Array<{ metric: Record<string, string>; value: number }>>
  stop: () => Promise<void>
}

/**
 * A real Prometheus on a free loopback port, scraping `targets` every second (as job "warden",
 * or as the jobs of `options.jobs`: job name → targets) and evaluating `ruleFiles` (absolute
 * paths), with its config and TSDB in a temp dir that stop() removes. Bounded: stop() kills it if
 * it does not exit. `port` (from freePort()) is for a target that must know Prometheus's URL
 * before Prometheus can scrape it: warden serve with prometheus.url.
 */
export async function startPrometheus(
  targets: string[],
  options: { scrapeInterval?: string; jobs?: Record<string, string[]>; ruleFiles?: string[]; port?: number } = {},
): Promise<RunningPrometheus> {
  requireBinary(PROMETHEUS)
  const dir = mkdtempSync(join(tmpdir(), 'warden-prometheus-'))
  const port = options.port ?? (await freePort())
  const interval = options.scrapeInterval ?? '1s'
  const jobs = { ...(targets.length || !options.jobs ? { warden: targets } : {}), ...(options.jobs ?? {}) }
  const scrapeConfigs = Object.entries(jobs)
    .map(([job, list]) => `  - job_name: '${job}'\n    static_configs:\n      - targets: [${list.map((t) => `'${t}'`).join(', ')}]\n`)
    .join('')
  // rules are evaluated at the scrape interval, so alerts turn pending within seconds
  const rules = (options.ruleFiles ?? []).map((file) => `'${file}'`)
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: ${interval}\n  evaluation_interval: ${interval}\n${rules.length ? `rule_files: [${rules.join(', ')}]\n` : ''}scrape_configs:\n${scrapeConfigs}`,
  )
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr = (stderr + String(chunk)).slice(-4000)))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = `http://127.0.0.1:${port}`

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) {
      await stop()
      throw new Error(`prometheus exited with ${child.exitCode} at start:\n${stderr}`)
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    )
    if (ready) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`prometheus did not become ready in 20 s:\n${stderr}`)
    }
    await sleep(100)
  }

  return {
    url,
    stop,
    async query(expr) {
      const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)
      const body = (await response.json()) as {
        status: string
        error?: string
        data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> }
      }
      if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`)
      return body.data!.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }))
    },
  }
}
