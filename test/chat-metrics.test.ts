import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { anthropicFactory } from '../src/chat/llm.js'
import { GEN_AI_DURATION_BUCKETS, GEN_AI_TOKEN_BUCKETS } from '../src/chat/metrics.js'
import { createChatRouter } from '../src/chat/router.js'
import { MOCK_STATS_PATH } from '../src/llm/mock-server.js'
import { MODEL, createSession, expectError, metricSum, say, sayStreaming, useChatHarness, type Harness } from './helpers/chat.js'
import type { Sample } from './helpers/server.js'

const chat = useChatHarness('chat_metrics')

const GEN_AI = { gen_ai_operation_name: 'chat', gen_ai_provider_name: 'anthropic', gen_ai_request_model: MODEL }

const bucketsOf = (samples: Sample[], name: string, labels: Record<string, string>) =>
  samples.filter((s) => s.name === `${name}_bucket` && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).map((s) => s.labels.le)

/** warden_llm_attempts_total by error_type, with the success label ('') spelled 200 like the mock's own books. */
async function attemptsByStatus(h: Harness): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const s of (await h.scrape()).filter((s) => s.name === 'warden_llm_attempts_total')) {
    expect(s.labels).toMatchObject({ gen_ai_provider_name: 'anthropic', gen_ai_request_model: MODEL })
    out[s.labels.error_type || '200'] = (out[s.labels.error_type || '200'] ?? 0) + s.value
  }
  return out
}

describe('GenAI metrics: the OpenTelemetry names and attributes', () => {
  it('duration and token usage carry operation, provider, request and response model; OTel buckets; two routers share one registry', async () => {
    const h = await chat.start({ mock: { outputTokens: 7 } })
    // a second router on the same registry (e.g. the admin service mounting another) reuses the metrics
    createChatRouter({
      pool: h.server.pool,
      anthropic: anthropicFactory({ baseURL: h.mock.url, apiKey: 'k' }),
      model: MODEL,
      registry: h.server.registry,
    })
    const id = await createSession(h)
    await say(h, id, 'count my tokens')
    const samples = await h.scrape()
    const ok = { ...GEN_AI, gen_ai_response_model: MODEL, error_type: '' }
    expect(samples.filter((s) => s.name === 'gen_ai_client_operation_duration_seconds_count')).toEqual([
      { name: 'gen_ai_client_operation_duration_seconds_count', labels: ok, value: 1 },
    ])
    const usage = { ...GEN_AI, gen_ai_response_model: MODEL }
    expect(samples.filter((s) => s.name === 'gen_ai_client_token_usage_sum')).toEqual(
      expect.arrayContaining([
        { name: 'gen_ai_client_token_usage_sum', labels: { ...usage, gen_ai_token_type: 'input' }, value: 3 },
        { name: 'gen_ai_client_token_usage_sum', labels: { ...usage, gen_ai_token_type: 'output' }, value: 7 },
      ]),
    )
    expect(bucketsOf(samples, 'gen_ai_client_operation_duration_seconds', ok)).toEqual([...GEN_AI_DURATION_BUCKETS.map(String), '+Inf'])
    expect(bucketsOf(samples, 'gen_ai_client_token_usage', { gen_ai_token_type: 'output' })).toEqual([
      ...GEN_AI_TOKEN_BUCKETS.map(String),
      '+Inf',
    ])
    // a non-streaming call reports no chunk timings
    expect(samples.filter((s) => s.name.startsWith('gen_ai_client_operation_time_'))).toEqual([])
    const text = await (await fetch(`${h.server.url}/metrics`)).text()
    expect(text).not.toContain(id)
  })

  it('a streamed call records time to first chunk and one time-per-chunk per chunk after the first', async () => {
    const h = await chat.start({ mock: { ttftMs: 250, outputTokens: 12, tokensPerSecond: 40 } })
    const id = await createSession(h)
    const started = performance.now()
    const reply = await sayStreaming(h, id, 'stream it')
    const total = (performance.now() - started) / 1000
    expect(reply.ok, JSON.stringify(reply.body)).toBe(true)
    const deltas = reply.events!.filter((e) => e.event === 'delta').length
    expect(deltas).toBeGreaterThan(2)
    const labels = { ...GEN_AI, gen_ai_response_model: MODEL }
    const ttfc = await metricSum(h, 'gen_ai_client_operation_time_to_first_chunk_seconds_sum', labels)
    expect(await metricSum(h, 'gen_ai_client_operation_time_to_first_chunk_seconds_count', labels)).toBe(1)
    // the mock withholds content for 250 ms; the client saw the whole reply within `total`
    expect(ttfc).toBeGreaterThanOrEqual(0.25)
    expect(ttfc).toBeLessThan(total)
    // every content delta the server got it forwarded as one SSE delta event
    expect(await metricSum(h, 'gen_ai_client_operation_time_per_output_chunk_seconds_count', labels)).toBe(deltas - 1)
    expect(await metricSum(h, 'gen_ai_client_operation_time_per_output_chunk_seconds_sum', labels)).toBeLessThan(total - ttfc)
    const samples = await h.scrape()
    expect(bucketsOf(samples, 'gen_ai_client_operation_time_to_first_chunk_seconds', labels).at(-2)).toBe('655.36')
    expect(Number(bucketsOf(samples, 'gen_ai_client_operation_time_per_output_chunk_seconds', labels).at(-2))).toBeGreaterThanOrEqual(60)
  })
})

describe('GenAI metrics: every HTTP attempt is counted, retries included', () => {
  it('warden_llm_attempts_total by error_type equals what the mock served (429, 500, 529, 200) through the SDK retries', async () => {
    const h = await chat.start({
      mock: { faultSequence: ['429', 'ok', '500', '529', 'ok', '529', '529', '529', 'ok'], retryAfterMs: 10 },
      maxRetries: 2,
    })
    const id = await createSession(h)
    expect((await say(h, id, 'one')).status).toBe(200) // 429, then 200
    expect((await say(h, id, 'two')).status).toBe(200) // 500, 529, then 200
    expectError(await say(h, id, 'three'), 502, 'llm_error') // 529 three times: retries exhausted
    expect((await say(h, id, 'four')).status).toBe(200)
    const served = (await (await fetch(`${h.mock.url}${MOCK_STATS_PATH}`)).json()) as { byStatus: Record<string, number> }
    expect(served.byStatus).toEqual({ '200': 3, '429': 1, '500': 1, '529': 4 })
    expect(await attemptsByStatus(h)).toEqual(served.byStatus)
    // the operation is the whole call, retries and their waits included: four calls, one failed
    expect(await metricSum(h, 'gen_ai_client_operation_duration_seconds_count')).toBe(4)
    expect(await metricSum(h, 'gen_ai_client_operation_duration_seconds_count', { error_type: '529' })).toBe(1)
  })

  it('attempts that never got an HTTP answer count as connection_error, one per try (a server that resets every connection)', async () => {
    let accepted = 0
    const resetter = net.createServer((socket) => {
      accepted += 1
      socket.resetAndDestroy()
    })
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve))
    try {
      const port = (resetter.address() as net.AddressInfo).port
      const h = await chat.start({ llmUrl: `http://127.0.0.1:${port}`, maxRetries: 2 })
      const id = await createSession(h)
      expectError(await say(h, id, 'anyone?'), 502, 'llm_unavailable')
      expect(accepted).toBe(3)
      expect(await attemptsByStatus(h)).toEqual({ connection_error: accepted })
    } finally {
      await new Promise<void>((resolve) => resetter.close(() => resolve()))
    }
  })
})
