import { Counter, Histogram, type Registry } from 'prom-client'
import { getOrCreateMetric } from '../metrics/registry.js'

/**
 * The LLM client metrics of SPEC.md, under the OpenTelemetry GenAI semantic-convention names and
 * attributes as Prometheus spells them (gen_ai.operation.name → gen_ai_operation_name), so
 * dashboards built for OTel-instrumented apps work unchanged. Labels never carry a session or
 * user id.
 */
export const CHAT_METRIC_NAMES = Object.freeze({
  operationDuration: 'gen_ai_client_operation_duration_seconds',
  tokenUsage: 'gen_ai_client_token_usage',
  timeToFirstChunk: 'gen_ai_client_operation_time_to_first_chunk_seconds',
  timePerOutputChunk: 'gen_ai_client_operation_time_per_output_chunk_seconds',
  attempts: 'warden_llm_attempts_total',
  costRowsLost: 'warden_llm_cost_rows_lost_total',
})

/** The OTel GenAI advisory boundaries (0.01 … 81.92 s) and three above: held-connection failures live at minutes. */
export const GEN_AI_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68, 655.36,
])

/**
 * The OTel per-output-token boundaries (0.01 … 2.5 s), then up to minutes: a stream that stalls
 * between two chunks (an overloaded provider, a proxy buffering) is what this histogram is for.
 */
export const GEN_AI_CHUNK_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80, 160,
])

/** The OTel token-usage boundaries (powers of 4). */
export const GEN_AI_TOKEN_BUCKETS: readonly number[] = Object.freeze([
  1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
])

const OPERATION_LABELS = ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'gen_ai_response_model'] as const
type OperationLabel = (typeof OPERATION_LABELS)[number]

export interface ChatMetrics {
  operationDuration: Histogram<OperationLabel | 'error_type'>
  tokenUsage: Histogram<OperationLabel | 'gen_ai_token_type'>
  timeToFirstChunk: Histogram<OperationLabel>
  timePerOutputChunk: Histogram<OperationLabel>
  attempts: Counter<'gen_ai_provider_name' | 'gen_ai_request_model' | 'error_type'>
  costRowsLost: Counter<'gen_ai_provider_name' | 'gen_ai_request_model'>
}

export function chatMetrics(registry: Registry): ChatMetrics {
  const registers = [registry]
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: readonly number[]) =>
    getOrCreateMetric(
      registry,
      name,
      Histogram,
      labelNames,
      () => new Histogram({ name, help, labelNames, buckets: [...buckets], registers }),
    )
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    getOrCreateMetric(registry, name, Counter, labelNames, () => new Counter({ name, help, labelNames, registers }))
  return {
    operationDuration: histogram(
      CHAT_METRIC_NAMES.operationDuration,
      'Duration of GenAI client operations (one LLM call as the application sees it): from the first request to the last byte of the reply, so SDK retries and their backoff waits are included, and streams last until their final chunk. error_type is empty on success, else the outcome of the last attempt (HTTP status, timeout, connection_error, cancelled, or a mid-stream error type); single attempts are in warden_llm_attempts_total.',
      [...OPERATION_LABELS, 'error_type'],
      GEN_AI_DURATION_BUCKETS,
    ),
    tokenUsage: histogram(
      CHAT_METRIC_NAMES.tokenUsage,
      'Tokens per GenAI client operation by gen_ai_token_type: input counts cached tokens too (input_tokens + cache_read_input_tokens + cache_creation_input_tokens), output what the model produced. A stream cut short reports the tokens it had received (a lower bound: one per whitespace-separated word).',
      [...OPERATION_LABELS, 'gen_ai_token_type'],
      GEN_AI_TOKEN_BUCKETS,
    ),
    timeToFirstChunk: histogram(
      CHAT_METRIC_NAMES.timeToFirstChunk,
      'Streamed calls only: time from issuing the request (retries included) to the first content chunk (a content_block_delta) of the reply.',
      OPERATION_LABELS,
      GEN_AI_DURATION_BUCKETS,
    ),
    timePerOutputChunk: histogram(
      CHAT_METRIC_NAMES.timePerOutputChunk,
      'Streamed calls only: time between two consecutive content chunks, one observation per chunk after the first.',
      OPERATION_LABELS,
      GEN_AI_CHUNK_BUCKETS,
    ),
    attempts: counter(
      CHAT_METRIC_NAMES.attempts,
      'Every HTTP attempt of an LLM call, counted at the HTTP layer (the SDK retries inside one call): error_type is empty for a 2xx answer, else the HTTP status, timeout, connection_error or cancelled. Retried faults that a call survives show here and nowhere else.',
      ['gen_ai_provider_name', 'gen_ai_request_model', 'error_type'],
    ),
    costRowsLost: counter(
      CHAT_METRIC_NAMES.costRowsLost,
      'llm_requests rows of LLM calls that could not be written, after retrying for the write budget (the database stayed unreachable): billed calls missing from the cost table. Each one is also logged (event llm_cost_lost) with its provider request id and usage, to reconcile by hand.',
      ['gen_ai_provider_name', 'gen_ai_request_model'],
    ),
  }
}
