import { loadConfig } from '../src/core/config.js'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { describe, expect, it } from 'vitest'
import { GENERATED_DOCS, renderGeneratedDocs } from '../scripts/gen-docs.js'
import { ROOT } from './helpers/cli.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kubernetes manifests, read by path in assertions
type Manifest = Record<string, any>

const DOCS = join(ROOT, 'docs')
const DEPLOY = join(ROOT, 'deploy')

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    return statSync(path).isDirectory() ? walk(path) : [path]
  })
}

const markdownFiles = [join(ROOT, 'README.md'), ...walk(DOCS).filter((f) => f.endsWith('.md'))]
const rel = (path: string) => relative(ROOT, path)

describe('generated docs', () => {
  it('docs/configuration.md and docs/metrics.md are what scripts/gen-docs.ts generates now (run `node --import tsx scripts/gen-docs.ts`)', async () => {
    const generated = await renderGeneratedDocs()
    expect(Object.keys(generated).sort()).toEqual(Object.values(GENERATED_DOCS).sort())
    for (const [file, text] of Object.entries(generated)) expect(readFileSync(join(ROOT, file), 'utf8'), file).toBe(text)
  })

  it('cover every config key, every environment variable and the metric names of the spec', () => {
    const configuration = readFileSync(join(ROOT, GENERATED_DOCS.configuration), 'utf8')
    for (const key of [
      'database.url',
      'sessions.columns.endedAt',
      'sessions.orphanAfter',
      'checks.idleInTransaction.crit',
      'server.adminToken',
      'scheduler.sweepApply',
    ])
      expect(configuration).toContain(`\`${key}\``)
    for (const env of ['WARDEN_DATABASE_URL', 'DATABASE_URL', 'WARDEN_ADMIN_TOKEN', 'WARDEN_ORPHAN_AFTER'])
      expect(configuration).toContain(`\`${env}\``)
    expect(configuration).toMatch(/\| `sessions\.orphanAfter` \| duration \| `2h` \|/)
    const metrics = readFileSync(join(ROOT, GENERATED_DOCS.metrics), 'utf8')
    for (const name of [
      'warden_sessions_orphaned',
      'warden_sweep_runs_total',
      'warden_pg_idle_in_transaction_max_seconds',
      'db_client_connection_wait_time_seconds',
      'warden_db_connection_held_during_llm_call_total',
      'gen_ai_client_operation_duration_seconds',
      'gen_ai_client_token_usage',
    ]) {
      expect(metrics).toContain(`| \`${name}\` |`)
    }
    expect(metrics).toMatch(/\| `warden_pg_connections` \| gauge \| `target`, `state`, `application_name` \|/)
  })
})

describe('deploy examples', () => {
  const yamlFiles = walk(DEPLOY).filter((f) => /\.ya?ml$/.test(f))
  const load = (file: string) => {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'))
    for (const doc of docs)
      expect(
        doc.errors.map((e) => e.message),
        rel(file),
      ).toEqual([])
    return docs.map((doc) => doc.toJS() as Manifest)
  }

  it('every YAML file parses', () => {
    expect(yamlFiles.map(rel).sort()).toEqual([
      'deploy/kubernetes/cronjob-sweep.yaml',
      'deploy/kubernetes/deployment-serve.yaml',
      'deploy/prometheus/scrape-config.yaml',
    ])
    for (const file of yamlFiles) expect(load(file).length, rel(file)).toBeGreaterThan(0)
  })

  it('the CronJob runs `sessions sweep --apply`, never two at once, with the database URL from a Secret', () => {
    const [cronJob] = load(join(DEPLOY, 'kubernetes/cronjob-sweep.yaml'))
    expect(cronJob).toMatchObject({ apiVersion: 'batch/v1', kind: 'CronJob', spec: { concurrencyPolicy: 'Forbid' } })
    const container = cronJob!.spec.jobTemplate.spec.template.spec.containers[0]
    expect(container.args.slice(0, 3)).toEqual(['sessions', 'sweep', '--apply'])
    expect(container.env).toContainEqual({
      name: 'WARDEN_DATABASE_URL',
      valueFrom: { secretKeyRef: { name: 'warden', key: 'database-url' } },
    })
  })

  it('the Deployment serves on a named port probed on /healthz and /readyz, with a Service and a ServiceMonitor on /metrics', () => {
    const docs = load(join(DEPLOY, 'kubernetes/deployment-serve.yaml'))
    expect(docs.map((d) => d.kind)).toEqual(['Deployment', 'Service', 'ServiceMonitor'])
    const [deployment, service, monitor] = docs as [Manifest, Manifest, Manifest]
    const container = deployment.spec.template.spec.containers[0]
    expect(container.args[0]).toBe('serve')
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    expect(container.env.map((e: { name: string }) => e.name).sort()).toEqual(['WARDEN_ADMIN_TOKEN', 'WARDEN_DATABASE_URL'])
    expect(container.env.every((e: { valueFrom?: { secretKeyRef?: unknown } }) => e.valueFrom?.secretKeyRef)).toBe(true)
    expect(deployment.spec.selector.matchLabels).toEqual(deployment.spec.template.metadata.labels)
    expect(service.spec.selector).toEqual(deployment.spec.template.metadata.labels)
    expect(monitor.spec.selector.matchLabels).toEqual(service.metadata.labels)
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })])
  })

  it('the Prometheus scrape config scrapes /metrics of port 9477', () => {
    const [config] = load(join(DEPLOY, 'prometheus/scrape-config.yaml'))
    expect(config!.scrape_configs[0]).toMatchObject({
      job_name: 'warden',
      metrics_path: '/metrics',
      static_configs: [{ targets: ['127.0.0.1:9477'] }],
    })
  })

  it('the multi-target job scrapes /probe of warden serve with each target name as ?target= and as instance', () => {
    const [config] = load(join(DEPLOY, 'prometheus/scrape-config.yaml'))
    const job = config!.scrape_configs.find((j: Manifest) => j.job_name === 'warden-targets')
    expect(job).toMatchObject({ metrics_path: '/probe', static_configs: [{ targets: ['chat-prod', 'billing'] }] })
    expect(job.relabel_configs).toEqual([
      { source_labels: ['__address__'], target_label: '__param_target' },
      { source_labels: ['__param_target'], target_label: 'instance' },
      { target_label: '__address__', replacement: '127.0.0.1:9477' },
    ])
  })

  it('the fleet example loads: its targets, tables and env references', () => {
    const { config } = loadConfig({
      configPath: join(ROOT, 'examples', 'fleet', 'warden.config.yaml'),
      env: { CHAT_DATABASE_URL: 'postgres://warden@chat-db:5432/chat', BILLING_DATABASE_URL: 'postgres://warden@billing-db:5432/billing' },
    })
    expect(config.targets.map((t) => [t.name, t.database.url, t.sessions.map((s) => s.name)])).toEqual([
      ['chat-prod', 'postgres://warden@chat-db:5432/chat', ['conversations', 'agent-runs']],
      ['billing', 'postgres://warden@billing-db:5432/billing', ['public.sessions']],
    ])
    expect(readFileSync(join(ROOT, 'examples', 'fleet', 'warden.config.yaml'), 'utf8')).not.toMatch(/:\/\/[^$\s]*:[^@\s]+@/)
  })

  it('the systemd units: a oneshot sweep with its timer, and the service; each runs an existing command', () => {
    const unit = (name: string) => readFileSync(join(DEPLOY, 'systemd', name), 'utf8')
    const sweep = unit('warden-sweep.service')
    expect(sweep).toMatch(/^Type=oneshot$/m)
    expect(sweep).toMatch(/^ExecStart=\S+ sessions sweep --apply /m)
    expect(sweep).toMatch(/^EnvironmentFile=/m)
    expect(unit('warden-sweep.timer')).toMatch(/^\[Timer\][\s\S]*^OnCalendar=\S+[\s\S]*^Unit=warden-sweep\.service$/m)
    expect(unit('warden-serve.service')).toMatch(/^ExecStart=\S+ serve /m)
    for (const name of ['warden-sweep.service', 'warden-sweep.timer', 'warden-serve.service']) {
      expect(unit(name)).toMatch(/^\[Unit\]$/m)
      expect(unit(name), name).toMatch(/^\[Install\]$|^Type=oneshot$/m)
    }
  })
})

describe('links and commands in the docs', () => {
  it('every relative link in README.md and docs/*.md resolves to a file', () => {
    const broken: string[] = []
    for (const file of markdownFiles) {
      const text = readFileSync(file, 'utf8')
      for (const match of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        const target = match[1]!
        if (/^[a-z][a-z+.-]*:/i.test(target) || target.startsWith('#')) continue
        const path = resolve(dirname(file), decodeURI(target.split('#')[0]!))
        if (!existsSync(path)) broken.push(`${rel(file)}: ${target}`)
      }
    }
    expect(broken).toEqual([])
  })

  it('every `warden <command>` in README.md and docs/*.md is a command of the CLI (dist/commands and its plugins)', () => {
    const commandsDir = join(ROOT, 'dist', 'commands')
    expect(existsSync(commandsDir), 'dist/commands is missing: run `npm run build`').toBe(true)
    const commands = new Set(
      walk(commandsDir)
        .filter((f) => f.endsWith('.js'))
        .map((f) => relative(commandsDir, f).replace(/\.js$/, '').split(/[\\/]/).join(' ')),
    )
    // and the commands of the oclif plugins the CLI loads (help, autocomplete)
    const { oclif } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { oclif: { plugins: string[] } }
    for (const plugin of oclif.plugins) {
      const manifest = JSON.parse(readFileSync(join(ROOT, 'node_modules', plugin, 'oclif.manifest.json'), 'utf8')) as {
        commands: Record<string, unknown>
      }
      for (const id of Object.keys(manifest.commands)) commands.add(id.split(':').join(' '))
    }
    const topics = new Set([...commands].filter((c) => c.includes(' ')).map((c) => c.split(' ')[0]!))
    const unknown: string[] = []
    let seen = 0
    for (const file of markdownFiles) {
      const text = readFileSync(file, 'utf8')
      // Code only: fenced blocks and inline code, where a command is something to type.
      const code = [...text.matchAll(/```[^\n]*\n([\s\S]*?)```/g), ...text.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g)].map(
        (m) => m[1]!,
      )
      for (const snippet of code) {
        for (const match of snippet.matchAll(/(?:^|[\s(`$|;&])warden ([a-z][\w-]*)(?: ([a-z][\w-]*))?/gm)) {
          const [first, second] = [match[1]!, match[2]]
          const command = topics.has(first) ? `${first} ${second ?? ''}`.trim() : first
          seen += 1
          if (!commands.has(command)) unknown.push(`${rel(file)}: warden ${command}`)
        }
      }
    }
    expect(seen).toBeGreaterThan(20)
    expect([...new Set(unknown)]).toEqual([])
  })
})
