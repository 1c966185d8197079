import type { ChildProcess } from 'node:child_process'
import Anthropic from '@anthropic-ai/sdk'
import { afterEach, describe, expect, it } from 'vitest'
import { migrate } from '../src/db/migrate.js'
import { ChatClient } from '../src/loadtest/http-client.js'
import { runCli, spawnCli } from './helpers/cli.js'
import { useTestDatabase } from './helpers/db.js'
import { waitFor } from './helpers/wait.js'

interface Running {
  child: ChildProcess
  first: Record<string, string>
  stdout: () => string
  stderr: () => string
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const children: ChildProcess[] = []
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

/** Starts a long-running command and waits for its first stdout line (the --json "listening" line). */
async function startCli(args: string[]): Promise<Running> {
  const child = spawnCli(args)
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  )
  const first = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no first line in 15 s; stderr: ${stderr}`)), 15_000)
    child.stdout!.on('data', () => {
      if (!stdout.includes('\n')) return
      clearTimeout(timer)
      resolve(JSON.parse(stdout.split('\n')[0]!))
    })
    void exit.then(({ code }) => reject(new Error(`exited ${code} before listening: ${stderr}`)))
  })
  return { child, first, exit, stdout: () => stdout, stderr: () => stderr }
}

describe('warden mock-llm', () => {
  it('serves the real SDK at the printed URL with the given latency and key, and stops cleanly on SIGTERM and SIGINT', async () => {
    const mock = await startCli(['mock-llm', '--json', '--latency', '150ms', '--output-tokens', '5', '--api-key', 'sekret'])
    expect(mock.first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const sdk = new Anthropic({ baseURL: mock.first.url, apiKey: 'sekret', maxRetries: 0 })
    const t0 = Date.now()
    const reply = await sdk.messages.create({ model: 'm', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140)
    expect(reply.usage.output_tokens).toBe(5)
    await expect(
      new Anthropic({ baseURL: mock.first.url, apiKey: 'wrong', maxRetries: 0 }).messages.create({
        model: 'm',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    ).rejects.toMatchObject({ status: 401 })
    mock.child.kill('SIGTERM')
    expect(await mock.exit).toEqual({ code: 0, signal: null })
    expect(mock.stderr()).toMatch(/mock LLM stopped \(SIGTERM\): 2 requests/)

    const human = spawnCli(['mock-llm', '--latency-median', '100ms', '--latency-p99', '1s', '--rate-529', '0.1'])
    children.push(human)
    let out = ''
    human.stdout!.on('data', (chunk) => (out += chunk))
    const closed = new Promise<number | null>((resolve) => human.once('close', resolve))
    await waitFor(() => out.includes('listening on'), '"listening on" on stdout', 20_000, 20)
    expect(out).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(latency median 100 ms, p99 1000 ms; faults: 529 0\.1\)/)
    human.kill('SIGINT')
    expect(await closed).toBe(0)
  })

  it('refuses bad flag values with exit 64 and says which flag', async () => {
    const cases = [
      [['--rate-529', '1.5'], /--rate-529 "1\.5": expected a probability/],
      [['--rate-429', '0.6', '--rate-500', '0.6'], /add up to 1\.2; at most 1/],
      [['--latency', 'soon'], /--latency "soon"/],
      [['--latency-median', '2s', '--latency-p99', '1s'], /--latency-p99 \(1000 ms\) must be at least/],
      [['--latency-median', '2s'], /latency-p99/],
    ] as const
    const results = await Promise.all(cases.map(([args]) => runCli(['mock-llm', ...args], { timeoutMs: 20_000 })))
    results.forEach((result, i) => {
      expect(result.code, `${cases[i]![0].join(' ')}: ${result.stderr}`).toBe(64)
      expect(result.stderr).toMatch(cases[i]![1])
    })
  })
})

describe('warden chat serve', () => {
  const t = useTestDatabase('chat_cli', async (t) => {
    await migrate(t.db, 'warden')
  })

  const serve = () =>
    startCli(['chat', 'serve', '--database-url', t.url, '--port', '0', '--json', '--mock-latency', '20ms', '--grace', '1s'])

  it('a conversation survives a crashed process (kill -9) and continues on a new one', async () => {
    const first = await serve()
    const api = new ChatClient(first.first.chatUrl!, { maxSockets: 2, timeoutMs: 10_000 })
    const id = `survives-${Date.now()}`
    expect((await api.request('POST', 'sessions', { id })).status).toBe(201)
    const turn1 = await api.request('POST', `sessions/${id}/messages`, { message: 'remember the number seven' })
    expect(turn1.status).toBe(200)
    first.child.kill('SIGKILL')
    await first.exit
    api.close()

    const second = await serve()
    expect(second.first.serverId).not.toBe(first.first.serverId)
    const api2 = new ChatClient(second.first.chatUrl!, { maxSockets: 2, timeoutMs: 10_000 })
    const turn2 = await api2.request('POST', `sessions/${id}/messages`, { message: 'which number?' })
    api2.close()
    expect(turn2.status, JSON.stringify(turn2.body)).toBe(200)
    expect(turn2.body.session).toMatchObject({ id, turnCount: 2, serverId: first.first.serverId })
    // the second call saw the first turn: its input is both user messages and the first reply
    expect(turn2.body.usage.inputTokens).toBe(turn1.body.usage.inputTokens + turn1.body.usage.outputTokens + 2)
    second.child.kill('SIGTERM')
    expect((await second.exit).code).toBe(0)
  })

  it('SIGTERM closes the open sessions this server opened, with end_reason shutdown, and exits 0', async () => {
    const server = await serve()
    const api = new ChatClient(server.first.chatUrl!, { maxSockets: 2, timeoutMs: 10_000 })
    const ids = [`term-a-${Date.now()}`, `term-b-${Date.now()}`]
    for (const id of ids) expect((await api.request('POST', 'sessions', { id })).status).toBe(201)
    await api.request('POST', `sessions/${ids[0]}/messages`, { message: 'hello' })
    api.close()
    server.child.kill('SIGTERM')
    expect(await server.exit).toEqual({ code: 0, signal: null })
    expect(server.stderr()).toMatch(/closed 2 open session\(s\)/)
    const { rows } = await t.exec(
      'SELECT is_active, end_reason, duration_seconds IS NOT NULL AS has_duration FROM warden.chat_sessions WHERE id = ANY($1)',
      [ids],
    )
    expect(rows).toEqual([
      { is_active: false, end_reason: 'shutdown', has_duration: true },
      { is_active: false, end_reason: 'shutdown', has_duration: true },
    ])
  })
})
