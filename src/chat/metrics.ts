import { Counter, Histogram, type Registry } from 'prom-client'
import { getOrCreateMetric } from '../metrics/registry.js'

/**
 * The LLM client metrics of SPEC.md, under the OpenTelemetry GenAI semantic-convention names as
 * Prometheus spells them, so dashboards built for OTel-instrumented apps work unchanged.
 * Labels never carry a session or user id.
 */
export const CHAT_METRIC_NAMES = Object.freeze({
  operationDuration: 'gen_ai_client_operation_duration_seconds',
  tokenUsage: 'gen_ai_client_token_usage',
  sessionsClosed: 'warden_sessions_closed_total',
})

/** The OTel GenAI advisory boundaries (0.01 … 81.92 s) and three above: held-connection failures live at minutes. */
export const GEN_AI_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68, 655.36,
])

export const GEN_AI_TOKEN_BUCKETS: readonly number[] = Object.freeze([
  1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
])

export interface ChatMetrics {
  operationDuration: Histogram<'gen_ai_request_model' | 'gen_ai_provider_name' | 'error_type'>
  tokenUsage: Histogram<'gen_ai_request_model' | 'gen_ai_token_type'>
  sessionsClosed: Counter<'reason'>
}

export function chatMetrics(registry: Registry): ChatMetrics {
  const registers = [registry]
  const durationLabels = ['gen_ai_request_model', 'gen_ai_provider_name', 'error_type'] as const
  const tokenLabels = ['gen_ai_request_model', 'gen_ai_token_type'] as const
  return {
    operationDuration: getOrCreateMetric(
      registry,
      CHAT_METRIC_NAMES.operationDuration,
      Histogram,
      durationLabels,
      () =>
        new Histogram({
          name: CHAT_METRIC_NAMES.operationDuration,
          help: 'Duration of GenAI client operations (LLM calls), including streaming; error_type is empty on success.',
          labelNames: durationLabels,
          buckets: [...GEN_AI_DURATION_BUCKETS],
          registers,
        }),
    ),
    tokenUsage: getOrCreateMetric(
      registry,
      CHAT_METRIC_NAMES.tokenUsage,
      Histogram,
      tokenLabels,
      () =>
        new Histogram({
          name: CHAT_METRIC_NAMES.tokenUsage,
          help: 'Tokens used per GenAI client operation, by token type (input, output).',
          labelNames: tokenLabels,
          buckets: [...GEN_AI_TOKEN_BUCKETS],
          registers,
        }),
    ),
    sessionsClosed: getOrCreateMetric(
      registry,
      CHAT_METRIC_NAMES.sessionsClosed,
      Counter,
      ['reason'],
      () =>
        new Counter({
          name: CHAT_METRIC_NAMES.sessionsClosed,
          help: 'Sessions closed, by reason.',
          labelNames: ['reason'] as const,
          registers,
        }),
    ),
  }
}
