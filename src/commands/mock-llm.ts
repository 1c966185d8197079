import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { ExitCode, usageError, WardenError } from '../core/errors.js'
import { startMockLlm, type MockLlmServer } from '../llm/mock-server.js'
import { untilStopSignal } from '../core/signals.js'
import { describeMockOptions, mockLlmFlags, mockLlmOptions } from '../llm/options.js'

export default class MockLlm extends WardenCommand {
  static override summary = 'An Anthropic-compatible Messages API server (POST /v1/messages) with set latency, streaming and faults.'

  static override description = `The real @anthropic-ai/sdk (and \`warden chat serve\`) can point at it: new Anthropic({ baseURL: <url>, apiKey }). Replies are lorem ipsum with realistic usage; streams follow the SSE event sequence of the real API. "[tools:N]" in the last user message, with tools in the request, gets N parallel tool_use blocks. GET /_mock/stats has its request counts and GET /_mock/calls every call it answered (request id, status, billed, tokens sent), so a test can compare what a client recorded with what the provider would bill. Runs until Ctrl-C or SIGTERM, then stops cleanly (exit 0).

With --json, one line {url, port, host, options} goes to stdout once it listens; the request counts go to stderr when it stops.`

  static override examples = [
    '<%= config.bin %> mock-llm --port 8787 --latency 1s',
    '<%= config.bin %> mock-llm --latency-median 800ms --latency-p99 10s --rate-529 0.02 --rate-hang 0.01',
    '<%= config.bin %> mock-llm --ttft 300ms --tokens-per-second 50 --output-tokens 200',
    '<%= config.bin %> mock-llm --api-key secret --json',
  ]

  static override flags = {
    port: Flags.integer({ description: 'port to listen on (0: a free one, printed)', default: 0, min: 0, max: 65_535 }),
    host: Flags.string({ description: 'address to listen on', default: '127.0.0.1' }),
    ...mockLlmFlags,
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(MockLlm)
    if (flags['database-url'] !== undefined || flags.config !== undefined)
      throw usageError('mock-llm uses no database or config file; --database-url and --config do not apply')
    const options = mockLlmOptions(flags)
    const stop = untilStopSignal()
    let server: MockLlmServer
    try {
      server = await startMockLlm({ ...options, port: flags.port, host: flags.host })
    } catch (error) {
      stop.dispose()
      const err = error as NodeJS.ErrnoException
      if (err instanceof RangeError) throw usageError(err.message)
      throw new WardenError(
        `cannot listen on ${flags.host}:${flags.port}: ${err.code ?? err.message}`,
        ExitCode.unavailable,
        err.code === 'EADDRINUSE' ? 'the port is taken; pick another --port or 0 for a free one' : undefined,
      )
    }
    if (this.jsonEnabled()) {
      process.stdout.write(
        `${JSON.stringify({ url: server.url, port: server.port, host: flags.host, options: describeMockOptions(options) })}\n`,
      )
    } else {
      this.say(`mock LLM listening on ${server.url} (${describeMockOptions(options)})`)
      this.say(`point the SDK at it: new Anthropic({ baseURL: '${server.url}', apiKey: '${options.apiKey ?? 'any'}' }); Ctrl-C to stop`)
    }
    const signal = await stop.signal
    await server.close()
    const stats = server.stats()
    const billed = server.calls().filter((call) => call.billed).length
    const summary = `mock LLM stopped (${signal}): ${stats.requests} requests (${billed} billed), ${stats.streams} streams, by status ${JSON.stringify(stats.byStatus)}, max in flight ${stats.maxInFlight}`
    if (this.jsonEnabled()) process.stderr.write(`${summary}\n`)
    else this.say(summary)
  }
}
