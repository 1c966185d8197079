import { createInterface } from 'node:readline/promises'
import { ExitCode, WardenError } from '../core/errors.js'

/**
 * Asks on the terminal. Without a terminal there is nobody to ask, and guessing "yes" for a
 * mutation is how incidents grow: that is an abort with its own exit code, pointing at --yes.
 */
export async function confirm(action: string, howToSkip: string): Promise<void> {
  if (!process.stdin.isTTY) {
    throw new WardenError(
      `refusing to ${action} without confirmation: there is no terminal to ask on; re-run with ${howToSkip}`,
      ExitCode.aborted,
    )
  }
  const question = `${action.charAt(0).toUpperCase()}${action.slice(1)}?`
  const prompt = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = (await prompt.question(`${question} [y/N] `)).trim().toLowerCase()
    if (answer !== 'y' && answer !== 'yes') throw new WardenError('aborted: nothing was changed', ExitCode.aborted)
  } finally {
    prompt.close()
  }
}
