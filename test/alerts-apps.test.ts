import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ROOT } from './helpers/cli.js'
import { PROMTOOL, requireBinary } from './helpers/prometheus.js'

const RULES = join(ROOT, 'prometheus', 'alerts-apps.yml')
const promtool = (...args: string[]) => execFileSync(requireBinary(PROMTOOL), args, { cwd: join(ROOT, 'prometheus'), encoding: 'utf8' })
const rules = (
  parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; annotations: Record<string, string> }> }> }
).groups.flatMap((group) => group.rules)

describe('application alert rules (prometheus/alerts-apps.yml)', () => {
  it('pass promtool check rules', () => {
    expect(promtool('check', 'rules', 'alerts-apps.yml')).toMatch(/SUCCESS: 3 rules found/)
  })

  it('pass their promtool unit tests: saturation, held-long (both spellings) and held-idle fire for the holder, not the healthy app', () => {
    expect(promtool('test', 'rules', 'alerts-apps.test.yml')).toMatch(/SUCCESS/)
  })

  it('each have a summary, a description, a runbook section and a unit test', () => {
    const runbook = readFileSync(join(ROOT, 'docs', 'runbook.md'), 'utf8')
    const anchors = new Set([...runbook.matchAll(/^## (\S+)/gm)].map((m) => m[1]!.toLowerCase()))
    const tested = readFileSync(join(ROOT, 'prometheus', 'alerts-apps.test.yml'), 'utf8')
    expect(rules.map((rule) => rule.alert)).toEqual(['WardenAppPoolSaturated', 'WardenAppConnectionHeldLong', 'WardenAppHeldIdle'])
    for (const rule of rules) {
      expect(rule.annotations.summary, rule.alert).toBeTruthy()
      expect(rule.annotations.description, rule.alert).toBeTruthy()
      expect(rule.annotations.runbook_url, rule.alert).toBe(`docs/runbook.md#${rule.alert.toLowerCase()}`)
      expect(anchors.has(rule.alert.toLowerCase()), `runbook section for ${rule.alert}`).toBe(true)
      expect(tested, `unit test for ${rule.alert}`).toContain(`alertname: ${rule.alert}`)
    }
  })
})
