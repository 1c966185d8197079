/**
 * Exit codes are part of Warden's interface: cron jobs, CI and Kubernetes branch on them.
 * Keep this table and the README's "Exit codes" section in step.
 */
export const ExitCode = {
  ok: 0,
  /** doctor: at least one warning */
  warning: 1,
  /** doctor: at least one critical finding */
  critical: 2,
  /** the database (or another dependency) could not be reached or refused us */
  unavailable: 3,
  /** a confirmation was declined, or was needed with no terminal to ask on */
  aborted: 4,
  /** another sweep/close holds the table's advisory lock, or another session locks the table itself; try again later */
  locked: 5,
  /** bad flags or flag combination (EX_USAGE) */
  usage: 64,
  /** a database statement failed for a reason that is not ours to retry */
  failed: 70,
  /** bad configuration, or a mapping that does not match the catalog (EX_CONFIG) */
  config: 78,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

/** An error meant for the user: its message is complete and safe to print, its code is the exit code. */
export class WardenError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue,
    readonly hint?: string,
    /** the SQLSTATE of the database error this one explains, when there was one */
    readonly sqlstate?: string,
  ) {
    super(message)
    this.name = 'WardenError'
  }
}

/** The SQLSTATE behind an error, whether the driver's own or one Warden already explained. */
export function sqlstateOf(error: unknown): string | undefined {
  if (error instanceof WardenError) return error.sqlstate
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

export const usageError = (message: string, hint?: string) => new WardenError(message, ExitCode.usage, hint)
export const configError = (message: string, hint?: string) => new WardenError(message, ExitCode.config, hint)
