import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ROOT } from './helpers/cli.js'
import { PROMTOOL, requireBinary } from './helpers/prometheus.js'
const RULES = join(ROOT, 'prometheus', 'alerts.yml')

function promtool(...args: string[]): string {
  return execFileSync(requireBinary(PROMTOOL), args, { cwd: join(ROOT, 'prometheus'), encoding: 'utf8' })
}

interface Rule {
  alert: string
  annotations: Record<string, string>
}
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((group) => group.rules)

describe('alert rules', () => {
  it('pass promtool check rules', () => {
    expect(promtool('check', 'rules', 'alerts.yml')).toMatch(/SUCCESS: 12 rules found/)
  })

  it('pass their promtool unit tests (each alert fires on its failure and not before)', () => {
    expect(promtool('test', 'rules', 'alerts.test.yml')).toMatch(/SUCCESS/)
  })

  it('each have a summary, a description and a runbook section that exists', () => {
    const runbook = readFileSync(join(ROOT, 'docs', 'runbook.md'), 'utf8')
    const anchors = new Set([...runbook.matchAll(/^## (\S+)/gm)].map((m) => m[1]!.toLowerCase()))
    for (const rule of rules) {
      expect(rule.annotations.summary, rule.alert).toBeTruthy()
      expect(rule.annotations.description, rule.alert).toBeTruthy()
      expect(rule.annotations.runbook_url, rule.alert).toBe(`docs/runbook.md#${rule.alert.toLowerCase()}`)
      expect(anchors.has(rule.alert.toLowerCase()), `runbook section for ${rule.alert}`).toBe(true)
    }
    const tested = readFileSync(join(ROOT, 'prometheus', 'alerts.test.yml'), 'utf8')
    for (const rule of rules) expect(tested, `unit test for ${rule.alert}`).toContain(`alertname: ${rule.alert}`)
  })
})
