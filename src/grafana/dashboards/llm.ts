import { GREEN, dashboard, labelVariable, sel, standardVariables, stat, timeseries, type Dashboard } from '../model.js'
import { poolBucketRate } from './pool.js'

const RATE = '[$__rate_interval]'
const MODEL = 'gen_ai_request_model=~"$model"'
const DURATION = 'gen_ai_client_operation_duration'
const TTFC = 'gen_ai_client_operation_time_to_first_chunk'
const PER_CHUNK = 'gen_ai_client_operation_time_per_output_chunk'
const TOKENS = 'gen_ai_client_token_usage'
const ATTEMPTS = 'warden_llm_attempts_total'
const LOST = 'warden_llm_cost_rows_lost_total'
const ERRORS = 'error_type!=""'
const QUANTILES = [0.5, 0.95, 0.99]

/** prometheus/alerts.yml: WardenLlmLatencyHigh (p95 > 30 s), WardenLlmErrorRatioHigh (> 5 %), WardenLlmAttemptErrorRatioHigh (> 10 %). */
const LATENCY_ALERT_SECONDS = 30
const ERROR_RATIO_ALERT = 0.05
const ATTEMPT_ERROR_RATIO_ALERT = 0.1

/**
 * rate() of a GenAI histogram series under both spellings: Warden's (`…_seconds_bucket`) and
 * OpenTelemetry's JavaScript Prometheus exporter's, which leaves the unit out (`…_bucket`). rate()
 * drops the name, so an app exposing one spelling is read once.
 */
const secondsRate = (unitless: string, series: 'bucket' | 'count' | 'sum', ...extra: string[]) =>
  `(rate(${sel(`${unitless}_seconds_${series}`, MODEL, ...extra)}${RATE}) or rate(${sel(`${unitless}_${series}`, MODEL, ...extra)}${RATE}))`

const calls = (...extra: string[]) => secondsRate(DURATION, 'count', ...extra)
const attempts = (...extra: string[]) => `rate(${sel(ATTEMPTS, MODEL, ...extra)}${RATE})`

const quantiles = (unitless: string, qs: number[], by = '') =>
  qs.map((q) => ({
    expr: `histogram_quantile(${q}, sum by (le${by ? `, ${by}` : ''}) (${secondsRate(unitless, 'bucket')}))`,
    legend: `${by ? `{{${by}}} ` : ''}p${Math.round(q * 100)}`,
  }))

export function llmDashboard(): Dashboard {
  return dashboard({
    uid: 'warden-llm',
    title: 'Warden / LLM',
    description:
      'LLM client calls under the OpenTelemetry GenAI names (gen_ai_client_operation_duration_seconds, gen_ai_client_token_usage, the streaming chunk timings): rate, latency, errors, HTTP attempts with retries, tokens and lost cost rows, from the reference chat path or any OTel-instrumented app.',
    variables: [
      ...standardVariables(`${DURATION}_seconds_count`),
      labelVariable(
        'model',
        'Model',
        `label_values(${DURATION}_seconds_count{job=~"$job", instance=~"$instance"}, gen_ai_request_model)`,
        'Requested model (gen_ai_request_model).',
      ),
    ],
    sections: [
      {
        title: 'Now',
        panels: [
          stat({
            title: 'LLM calls',
            description: 'LLM calls per second, successful or not, all selected models; one call is one operation, its retries included.',
            unit: 'reqps',
            w: 4,
            queries: [{ expr: `sum(${calls()})`, legend: 'calls' }],
          }),
          stat({
            title: 'Call error ratio',
            description: `Share of LLM calls that ended in an error after the SDK's retries (HTTP 429/529/5xx, timeout, connection error, cancelled). Red above ${ERROR_RATIO_ALERT * 100} %: WardenLlmErrorRatioHigh.`,
            unit: 'percentunit',
            colorMode: 'background',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: 0.01 }, { color: 'red', value: ERROR_RATIO_ALERT }],
            queries: [{ expr: `(sum(${calls(ERRORS)}) or on () vector(0)) / sum(${calls()})`, legend: 'errors' }],
          }),
          stat({
            title: 'Attempt error ratio',
            description: `Share of HTTP attempts that failed, retries included (warden_llm_attempts_total), attempts cancelled by a client or a shutdown left out: faults the retries hid from the call error ratio show here. Red above ${ATTEMPT_ERROR_RATIO_ALERT * 100} %: WardenLlmAttemptErrorRatioHigh.`,
            unit: 'percentunit',
            colorMode: 'background',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: 0.02 }, { color: 'red', value: ATTEMPT_ERROR_RATIO_ALERT }],
            queries: [
              {
                expr: `(sum(${attempts('error_type!~"|cancelled"')}) or on () vector(0)) / sum(${attempts('error_type!="cancelled"')})`,
                legend: 'failed attempts',
              },
            ],
          }),
          stat({
            title: 'Latency p95',
            description: `95th percentile duration of LLM calls (retries and their backoff, streaming and errors included), all selected models. Red above ${LATENCY_ALERT_SECONDS} s: WardenLlmLatencyHigh.`,
            unit: 's',
            w: 4,
            thresholds: [GREEN, { color: 'yellow', value: 10 }, { color: 'red', value: LATENCY_ALERT_SECONDS }],
            queries: quantiles(DURATION, [0.95]),
          }),
          stat({
            title: 'Tokens per second',
            description:
              'Input (cached tokens included) and output tokens per second, all selected models; streams cut short count what they had received.',
            unit: 'short',
            w: 4,
            queries: [{ expr: `sum(rate(${sel(`${TOKENS}_sum`, MODEL)}${RATE}))`, legend: 'tokens/s' }],
          }),
          stat({
            title: 'Cost rows lost',
            description:
              'llm_requests rows per hour that could not be written (the database stayed away past the write retries): billed calls missing from the cost table. Each is logged with event llm_cost_lost and its provider request id. Should be 0.',
            unit: 'short',
            colorMode: 'background',
            w: 4,
            decimals: 1,
            thresholds: [GREEN, { color: 'red', value: 0.001 }],
            queries: [{ expr: `3600 * sum(rate(${sel(LOST, MODEL)}${RATE})) or on () vector(0)`, legend: 'lost / h' }],
          }),
        ],
      },
      {
        title: 'Traffic and errors',
        panels: [
          timeseries({
            title: 'LLM calls by model',
            description: 'LLM calls per second by requested model, successful or not.',
            unit: 'reqps',
            w: 8,
            stack: true,
            queries: [{ expr: `sum by (gen_ai_request_model) (${calls()})`, legend: '{{gen_ai_request_model}}' }],
          }),
          timeseries({
            title: 'LLM calls by outcome',
            description:
              'LLM calls per second by error_type: ok for successes, else the outcome of the last attempt: the HTTP status (429, 529, 500, …), timeout, connection_error, cancelled (the client went away, or shutdown) or a mid-stream error type.',
            unit: 'reqps',
            w: 8,
            stack: true,
            queries: [
              { expr: `label_replace(sum by (error_type) (${calls()}), "error_type", "ok", "error_type", "")`, legend: '{{error_type}}' },
            ],
          }),
          timeseries({
            title: 'Error ratio by type',
            description: `Share of each model's calls that failed, by error type. Dashed line: ${ERROR_RATIO_ALERT * 100} % of all calls, WardenLlmErrorRatioHigh. No data: no call failed in the range.`,
            unit: 'percentunit',
            w: 8,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: ERROR_RATIO_ALERT }],
            queries: [
              {
                expr: `sum by (gen_ai_request_model, error_type) (${calls(ERRORS)}) / ignoring (error_type) group_left sum by (gen_ai_request_model) (${calls()})`,
                legend: '{{gen_ai_request_model}} {{error_type}}',
              },
            ],
          }),
        ],
      },
      {
        title: 'HTTP attempts (retries included)',
        panels: [
          timeseries({
            title: 'Attempts by outcome',
            description:
              'HTTP attempts per second by error_type, counted at the HTTP layer: every retry the SDK makes inside a call is one more attempt. ok: a 2xx answer; else the HTTP status, timeout, connection_error or cancelled.',
            unit: 'reqps',
            w: 8,
            stack: true,
            queries: [
              {
                expr: `label_replace(sum by (error_type) (${attempts()}), "error_type", "ok", "error_type", "")`,
                legend: '{{error_type}}',
              },
            ],
          }),
          timeseries({
            title: 'Attempt error ratio by model',
            description: `Share of each model's HTTP attempts that failed, cancellations left out. Dashed line: ${ATTEMPT_ERROR_RATIO_ALERT * 100} %, WardenLlmAttemptErrorRatioHigh.`,
            unit: 'percentunit',
            w: 8,
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: ATTEMPT_ERROR_RATIO_ALERT }],
            queries: [
              {
                expr: `(sum by (gen_ai_request_model) (${attempts('error_type!~"|cancelled"')}) or sum by (gen_ai_request_model) (${attempts()}) * 0) / sum by (gen_ai_request_model) (${attempts('error_type!="cancelled"')})`,
                legend: '{{gen_ai_request_model}}',
              },
            ],
          }),
          timeseries({
            title: 'Attempts per call',
            description:
              'HTTP attempts per LLM call by model: 1 when nothing is retried; each retry adds its backoff (or the provider’s retry-after) to the call’s duration.',
            unit: 'short',
            w: 8,
            decimals: 2,
            queries: [
              {
                expr: `sum by (gen_ai_request_model) (${attempts()}) / sum by (gen_ai_request_model) (${calls()})`,
                legend: '{{gen_ai_request_model}}',
              },
            ],
          }),
        ],
      },
      {
        title: 'Latency',
        panels: [
          timeseries({
            title: 'Latency by model',
            description: `p50, p95 and p99 duration of LLM calls by model: from the first request to the last byte, so retries and their backoff, streaming and errors are included. Connections held across these calls are held this long. Dashed line: ${LATENCY_ALERT_SECONDS} s p95, WardenLlmLatencyHigh.`,
            unit: 's',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: LATENCY_ALERT_SECONDS }],
            queries: quantiles(DURATION, QUANTILES, 'gen_ai_request_model'),
          }),
          timeseries({
            title: 'Mean latency, successes and errors',
            description:
              'Mean duration of successful and of failed calls by model. Fast errors (429 at once) pull the overall mean down; timeouts push it up; successes that needed retries include the waits.',
            unit: 's',
            queries: [
              {
                expr: `sum by (gen_ai_request_model) (${secondsRate(DURATION, 'sum', 'error_type=""')}) / sum by (gen_ai_request_model) (${calls('error_type=""')})`,
                legend: '{{gen_ai_request_model}} ok',
              },
              {
                expr: `sum by (gen_ai_request_model) (${secondsRate(DURATION, 'sum', ERRORS)}) / sum by (gen_ai_request_model) (${calls(ERRORS)})`,
                legend: '{{gen_ai_request_model}} errors',
              },
            ],
          }),
        ],
      },
      {
        title: 'Streaming',
        panels: [
          timeseries({
            title: 'Time to first chunk',
            description:
              'Streamed calls: p50, p95 and p99 time from issuing the request (retries included) to the first content chunk, what a user waits before text appears.',
            unit: 's',
            queries: quantiles(TTFC, QUANTILES),
          }),
          timeseries({
            title: 'Time per output chunk',
            description:
              'Streamed calls: p50, p95 and p99 time between two consecutive content chunks. A high tail is a stream that stalls mid-reply (an overloaded provider, a buffering proxy).',
            unit: 's',
            queries: quantiles(PER_CHUNK, QUANTILES),
          }),
        ],
      },
      {
        title: 'Tokens',
        panels: [
          timeseries({
            title: 'Token usage by type',
            description:
              'Tokens per second by gen_ai_token_type, all selected models: input counts cached tokens too (input + cache read + cache creation), output what the model produced. What the bill grows with.',
            unit: 'short',
            w: 8,
            stack: true,
            queries: [
              { expr: `sum by (gen_ai_token_type) (rate(${sel(`${TOKENS}_sum`, MODEL)}${RATE}))`, legend: '{{gen_ai_token_type}}' },
            ],
          }),
          timeseries({
            title: 'Token usage by model and type',
            description: 'Tokens per second by model and token type.',
            unit: 'short',
            w: 8,
            stack: true,
            queries: [
              {
                expr: `sum by (gen_ai_request_model, gen_ai_token_type) (rate(${sel(`${TOKENS}_sum`, MODEL)}${RATE}))`,
                legend: '{{gen_ai_request_model}} {{gen_ai_token_type}}',
              },
            ],
          }),
          timeseries({
            title: 'Tokens per call',
            description:
              'p50 and p95 of tokens per call by token type, from the gen_ai_client_token_usage histogram (buckets are powers of 4, so values are coarse).',
            unit: 'short',
            w: 8,
            queries: [0.5, 0.95].map((q) => ({
              expr: `histogram_quantile(${q}, sum by (le, gen_ai_token_type) (rate(${sel(`${TOKENS}_bucket`, MODEL)}${RATE})))`,
              legend: `{{gen_ai_token_type}} p${Math.round(q * 100)}`,
            })),
          }),
        ],
      },
      {
        title: 'The database during LLM calls',
        panels: [
          timeseries({
            title: 'LLM calls made while holding a connection',
            description:
              'LLM calls per minute that started while their request held a checked-out database connection, by pool and operation: each one holds a pool slot for the whole call above. No data means it never happened.',
            unit: 'cpm',
            queries: [
              {
                expr: `60 * sum by (db_client_connection_pool_name, operation) (rate(${sel('warden_db_connection_held_during_llm_call_total')}${RATE}))`,
                legend: '{{db_client_connection_pool_name}} {{operation}}',
              },
            ],
          }),
          timeseries({
            title: 'Pool wait p95',
            description:
              'p95 wait for a database connection per pool. Rising together with LLM latency means connections are held across LLM calls (post-mortem 1); flat means the release-before-call pattern holds.',
            unit: 's',
            queries: [
              {
                expr: `histogram_quantile(0.95, sum by (le, db_client_connection_pool_name) (${poolBucketRate('db_client_connection_wait_time')}))`,
                legend: '{{db_client_connection_pool_name}}',
              },
            ],
          }),
        ],
      },
    ],
  })
}
