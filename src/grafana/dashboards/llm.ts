import { GREEN, dashboard, labelVariable, sel, standardVariables, stat, timeseries, type Dashboard } from '../model.js'

const RATE = '[$__rate_interval]'
const MODEL = 'gen_ai_request_model=~"$model"'
const DURATION = 'gen_ai_client_operation_duration_seconds'
const TOKENS = 'gen_ai_client_token_usage'
const ERRORS = 'error_type!=""'
const QUANTILES = [0.5, 0.95, 0.99]

/** prometheus/alerts.yml: WardenLlmLatencyHigh (p95 > 30 s) and WardenLlmErrorRatioHigh (> 5 %). */
const LATENCY_ALERT_SECONDS = 30
const ERROR_RATIO_ALERT = 0.05

const calls = (...extra: string[]) => `rate(${sel(`${DURATION}_count`, MODEL, ...extra)}${RATE})`

export function llmDashboard(): Dashboard {
  return dashboard({
    uid: 'warden-llm',
    title: 'Warden / LLM',
    description:
      'LLM client calls under the OpenTelemetry GenAI names (gen_ai_client_operation_duration_seconds, gen_ai_client_token_usage): rate, latency, errors and tokens, from the reference chat path or any OTel-instrumented app.',
    variables: [
      ...standardVariables(`${DURATION}_count`),
      labelVariable(
        'model',
        'Model',
        `label_values(${DURATION}_count{job=~"$job", instance=~"$instance"}, gen_ai_request_model)`,
        'Requested model (gen_ai_request_model).',
      ),
    ],
    sections: [
      {
        title: 'Now',
        panels: [
          stat({
            title: 'LLM calls',
            description: 'LLM calls per second, successful or not, all selected models.',
            unit: 'reqps',
            queries: [{ expr: `sum(${calls()})`, legend: 'calls' }],
          }),
          stat({
            title: 'Error ratio',
            description: `Share of LLM calls that ended in an error (HTTP 429/529/5xx, timeout, connection error, cancelled). Red above ${ERROR_RATIO_ALERT * 100} %: WardenLlmErrorRatioHigh.`,
            unit: 'percentunit',
            colorMode: 'background',
            thresholds: [GREEN, { color: 'yellow', value: 0.01 }, { color: 'red', value: ERROR_RATIO_ALERT }],
            queries: [{ expr: `(sum(${calls(ERRORS)}) or on () vector(0)) / sum(${calls()})`, legend: 'errors' }],
          }),
          stat({
            title: 'Latency p95',
            description: `95th percentile duration of LLM calls (streaming included, errors included), all selected models. Red above ${LATENCY_ALERT_SECONDS} s: WardenLlmLatencyHigh.`,
            unit: 's',
            thresholds: [GREEN, { color: 'yellow', value: 10 }, { color: 'red', value: LATENCY_ALERT_SECONDS }],
            queries: [{ expr: `histogram_quantile(0.95, sum by (le) (rate(${sel(`${DURATION}_bucket`, MODEL)}${RATE})))`, legend: 'p95' }],
          }),
          stat({
            title: 'Tokens per second',
            description: 'Input and output tokens per second of successful calls, all selected models (failed calls report no usage).',
            unit: 'short',
            queries: [{ expr: `sum(rate(${sel(`${TOKENS}_sum`, MODEL)}${RATE}))`, legend: 'tokens/s' }],
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
              'LLM calls per second by error_type: ok for successes, else the HTTP status (429, 529, 500, …), timeout, connection_error or cancelled (the client went away, or shutdown).',
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
        title: 'Latency',
        panels: [
          timeseries({
            title: 'Latency by model',
            description: `p50, p95 and p99 duration of LLM calls by model, streaming and errors included. Connections held across these calls are held this long. Dashed line: ${LATENCY_ALERT_SECONDS} s p95, WardenLlmLatencyHigh.`,
            unit: 's',
            thresholdLines: true,
            thresholds: [GREEN, { color: 'red', value: LATENCY_ALERT_SECONDS }],
            queries: QUANTILES.map((q) => ({
              expr: `histogram_quantile(${q}, sum by (le, gen_ai_request_model) (rate(${sel(`${DURATION}_bucket`, MODEL)}${RATE})))`,
              legend: `{{gen_ai_request_model}} p${Math.round(q * 100)}`,
            })),
          }),
          timeseries({
            title: 'Mean latency, successes and errors',
            description:
              'Mean duration of successful and of failed calls by model. Fast errors (429 at once) pull the overall mean down; timeouts push it up.',
            unit: 's',
            queries: [
              {
                expr: `sum by (gen_ai_request_model) (rate(${sel(`${DURATION}_sum`, MODEL, 'error_type=""')}${RATE})) / sum by (gen_ai_request_model) (${calls('error_type=""')})`,
                legend: '{{gen_ai_request_model}} ok',
              },
              {
                expr: `sum by (gen_ai_request_model) (rate(${sel(`${DURATION}_sum`, MODEL, ERRORS)}${RATE})) / sum by (gen_ai_request_model) (${calls(ERRORS)})`,
                legend: '{{gen_ai_request_model}} errors',
              },
            ],
          }),
        ],
      },
      {
        title: 'Tokens',
        panels: [
          timeseries({
            title: 'Token usage by type',
            description: 'Tokens per second by gen_ai_token_type (input, output), all selected models: what the bill grows with.',
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
                expr: `60 * sum by (pool_name, operation) (rate(${sel('warden_db_connection_held_during_llm_call_total')}${RATE}))`,
                legend: '{{pool_name}} {{operation}}',
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
                expr: `histogram_quantile(0.95, sum by (le, pool_name) (rate(${sel('db_client_connection_wait_time_seconds_bucket')}${RATE})))`,
                legend: '{{pool_name}}',
              },
            ],
          }),
        ],
      },
    ],
  })
}
