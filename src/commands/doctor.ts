import { Flags } from '@oclif/core'
import { WardenCommand } from '../cli/base-command.js'
import { wrap } from '../cli/wrap.js'
import { ExitCode, WardenError } from '../core/errors.js'
import { CHECK_NAMES } from '../checks/index.js'
import { runFleetChecks, summarizeResults, type DoctorReport } from '../checks/run.js'
import { runAppChecks } from '../checks/run-apps.js'
import type { CheckResult } from '../checks/types.js'
import { withDatabases } from '../db/databases.js'

const BADGE = { ok: ' OK ', warn: 'WARN', crit: 'CRIT', skipped: 'SKIP', error: 'FAIL' } as const

export default class Doctor extends WardenCommand {
  static override summary = 'Run every health check and give one verdict.'

  static override description = `Checks: ${CHECK_NAMES.join(', ')}. Each runs in its own read-only transaction with a deadline; one that fails reports itself and the rest still run. Thresholds live under "checks:" in the config file.

With --prometheus (or prometheus.url in the config) the app-* checks also read the applications' own pool and GenAI metrics (OpenTelemetry db.client.connection.*, gen_ai.client.*) from Prometheus, whatever language the application is written in; each names the job and pool it blames with the PromQL and the values. Prometheus unreachable: those checks FAIL, the database checks still run.

Exit codes: 0 ok, 1 warning, 2 critical, 3 could not run (database unreachable, bad configuration, unknown --check, or a check that failed with nothing critical found).`

  static override examples = [
    '<%= config.bin %> doctor',
    '<%= config.bin %> doctor --check idle-in-transaction --check connection-headroom',
    '<%= config.bin %> doctor --prometheus http://prometheus:9090',
    '<%= config.bin %> doctor --json | jq \'.checks[] | select(.status != "ok")\'',
  ]

  static override flags = {
    check: Flags.string({ description: `run only this check (repeatable): ${CHECK_NAMES.join(', ')}`, multiple: true }),
    verbose: Flags.boolean({ char: 'v', description: 'show the evidence rows of every finding' }),
    'check-timeout': Flags.integer({ description: 'deadline per check, in milliseconds', default: 10_000, min: 100 }),
    target: Flags.string({ description: 'check only this target (default: every target of the configuration)' }),
    prometheus: Flags.string({
      description: "Prometheus base URL for the app-* checks (the applications' pool and GenAI metrics); overrides prometheus.url",
    }),
  }

  async run(): Promise<DoctorReport> {
    const { flags } = await this.parse(Doctor)
    const loaded = this.loadConfig(flags, [{ key: 'prometheus.url', flag: '--prometheus', value: flags.prometheus }])
    const targets = flags.target === undefined ? loaded.config.targets : [this.selectedTarget(loaded, flags)]
    const several = loaded.config.targets.length > 1
    // A target that cannot be reached is a finding (every check of it FAILs), not the end of the run.
    const started = performance.now()
    // the applications' metrics and the databases are independent: neither waits for, nor fails, the other
    const [databases, apps] = await Promise.all([
      withDatabases(
        targets,
        (target) => this.openDatabase(target),
        (inputs) =>
          runFleetChecks(loaded.config, inputs, {
            only: flags.check,
            checkTimeoutMs: flags['check-timeout'],
            checkTimeoutSetting: '--check-timeout',
          }),
      ),
      runAppChecks(loaded.config, { only: flags.check }),
    ])
    const report = apps.length ? summarizeResults([...databases.checks, ...apps], performance.now() - started) : databases
    for (const group of groupUnreachable(report.checks)) {
      const { check } = group
      const where = [several ? check.target : undefined, check.table].filter(Boolean).join('/')
      const name = group.count > 1 ? `all ${group.count} checks of target ${check.target}` : `${check.name}${where ? `  (${where})` : ''}`
      this.say(`${BADGE[check.status]}  ${name}`)
      this.say(wrap(check.message, 78, '      '))
      if ((flags.verbose || check.status === 'warn' || check.status === 'crit') && check.evidence.length > 0) {
        for (const row of check.evidence.slice(0, flags.verbose ? 50 : 3)) this.say(wrap(JSON.stringify(row), 78, '        '))
      }
    }
    this.say('')
    this.say(report.verdict)
    process.exitCode = report.exitCode
    return report
  }

  /** Whatever stops doctor from judging the database is "could not run" to cron and CI. */
  protected override async catch(error: Error & { exitCode?: number }): Promise<unknown> {
    if (error instanceof WardenError) return super.catch(new WardenError(error.message, ExitCode.unavailable, error.hint))
    return super.catch(error)
  }
}

/** A target that cannot be reached fails every check with the same message: say it once. */
function groupUnreachable(checks: CheckResult[]): Array<{ check: CheckResult; count: number }> {
  const out: Array<{ check: CheckResult; count: number }> = []
  for (const check of checks) {
    const last = out[out.length - 1]
    if (
      last &&
      check.status === 'error' &&
      last.check.status === 'error' &&
      last.check.target === check.target &&
      last.check.message === check.message
    ) {
      last.count += 1
    } else out.push({ check, count: 1 })
  }
  return out
}
