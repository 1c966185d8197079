import { Errors, type Hook } from '@oclif/core'
import { ExitCode } from '../core/errors.js'

/** oclif exits 2 for an unknown command, which Warden reserves for "critical": a typo is a usage error. */
// oclif's Hook type is async; this one only throws.
// eslint-disable-next-line @typescript-eslint/require-await
const hook: Hook<'command_not_found'> = async function (options) {
  const shown = options.id.replaceAll(':', ' ')
  throw new Errors.CLIError(`unknown command "${shown}"; see \`${options.config.bin} --help\``, { exit: ExitCode.usage })
}

export default hook
