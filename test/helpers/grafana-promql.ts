import type { SyntaxNode } from '@lezer/common'
import { parser } from '@prometheus-io/lezer-promql'

/*
 * PromQL as the dashboards' lint and metric checks need it, read with the Prometheus project's
 * own grammar (@prometheus-io/lezer-promql, the parser of the Prometheus UI): the selectors an
 * expression reads, their matchers, and the ranges of the functions that take range vectors.
 */

export interface Matcher {
  name: string
  op: '=' | '!=' | '=~' | '!~'
  value: string
}

export interface Selector {
  /** the metric name, written before the braces or as __name__="…" */
  name: string | undefined
  matchers: Matcher[]
  /** the function this selector is the range vector of, e.g. rate for rate(x[5m]) */
  rangeOf: string | undefined
}

export interface RangeCall {
  func: string
  /** the range of its range-vector or subquery argument as written, e.g. $__rate_interval */
  range: string
}

export interface PromQL {
  selectors: Selector[]
  /** calls of functions whose argument is a range vector or a subquery */
  rangeCalls: RangeCall[]
}

export class PromQLSyntaxError extends Error {
  constructor(
    message: string,
    readonly expr: string,
    readonly position: number,
  ) {
    super(`${message} at ${position}: ${expr.slice(0, position)}⟨here⟩${expr.slice(position)}`)
    this.name = 'PromQLSyntaxError'
  }
}

/** A dashboard variable ($name, ${name}, ${name:format}) outside a quoted string; the strings are matched to be skipped. */
const STRING_OR_VARIABLE = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\$\{\w+(?::\w+)?\}|\$\w+/g
const TERMINATED_STRING = /^(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)$/s

/**
 * Grafana replaces its variables before Prometheus sees a query, so the grammar does not know
 * them. Each becomes a duration literal of the same length (valid in a range, after offset and
 * as a number), which keeps every node at its place in the text as written.
 */
const withoutVariables = (expr: string): string =>
  expr.replace(STRING_OR_VARIABLE, (token) => (token.startsWith('$') ? '1s'.padStart(token.length, '0') : token))

const unquote = (literal: string): string =>
  literal.startsWith('`')
    ? literal.slice(1, -1)
    : literal.slice(1, -1).replace(/\\(.)/gs, (_, char: string) => ({ n: '\n', t: '\t', r: '\r' })[char] ?? char)

/** Parses `expr` (throws PromQLSyntaxError where the grammar fails) and reads what the checks need. */
export function parsePromQL(expr: string): PromQL {
  const tree = parser.parse(withoutVariables(expr))
  const text = (node: SyntaxNode) => expr.slice(node.from, node.to)
  const vectorSelectors: SyntaxNode[] = []
  const rangeCalls: RangeCall[] = []
  let error: PromQLSyntaxError | undefined
  const fail = (message: string, position: number) => (error ??= new PromQLSyntaxError(message, expr, position))

  tree.iterate({
    enter(ref) {
      const node = ref.node
      if (node.type.isError) fail('syntax error', node.from)
      else if (node.name === 'StringLiteral' && !TERMINATED_STRING.test(text(node))) fail('unterminated string', node.from)
      else if (node.name === 'MatrixSelector' && node.firstChild?.name !== 'VectorSelector')
        fail('a range needs a vector selector (or write a subquery [range:step])', node.from)
      else if (node.name === 'VectorSelector') vectorSelectors.push(node)
      else if (node.name === 'FunctionCall') {
        const argument =
          node.getChild('FunctionCallBody')?.getChild('MatrixSelector') ?? node.getChild('FunctionCallBody')?.getChild('SubqueryExpr')
        const range = argument?.getChild('DurationExpr')
        if (range) rangeCalls.push({ func: text(node.getChild('FunctionIdentifier')!), range: text(range) })
      }
    },
  })
  if (error) throw error
  return { selectors: vectorSelectors.map(selector), rangeCalls }

  function selector(node: SyntaxNode): Selector {
    const matchers: Matcher[] = []
    // {"name", …}: a metric name in quotes (Prometheus 3's UTF-8 names)
    const quoted = node.getChild('LabelMatchers')?.getChild('QuotedLabelName')?.getChild('StringLiteral')
    const quotedName = quoted ? unquote(text(quoted)) : undefined
    for (const matcher of node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
      matchers.push({
        name: text(matcher.getChild('LabelName')!),
        op: text(matcher.getChild('MatchOp')!) as Matcher['op'],
        value: unquote(text(matcher.getChild('StringLiteral')!)),
      })
    }
    for (const matcher of node.getChild('LabelMatchers')?.getChildren('QuotedLabelMatcher') ?? []) {
      matchers.push({
        name: unquote(text(matcher.getChild('QuotedLabelName')!.getChild('StringLiteral')!)),
        op: text(matcher.getChild('MatchOp')!) as Matcher['op'],
        value: unquote(text(matcher.getChild('StringLiteral')!)),
      })
    }
    const identifier = node.getChild('Identifier')
    const name = identifier ? text(identifier) : (quotedName ?? matchers.find((m) => m.name === '__name__' && m.op === '=')?.value)
    const call = node.parent?.name === 'MatrixSelector' ? node.parent.parent?.parent : undefined
    const rangeOf = call?.name === 'FunctionCall' ? text(call.getChild('FunctionIdentifier')!) : undefined
    return { name, matchers, rangeOf }
  }
}

/** The metric names an expression reads (series names, e.g. `x_bucket`, as written). */
export function metricNames(expr: string): string[] {
  return [...new Set(parsePromQL(expr).selectors.flatMap((s) => (s.name ? [s.name] : [])))]
}
