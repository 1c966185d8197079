import type { TargetConfig } from '../core/config.js'
import type { Database } from './database.js'

/** Opens one Database per target for the work, and always closes them all. */
export async function withDatabases<T>(
  targets: readonly TargetConfig[],
  open: (target: TargetConfig) => Database,
  work: (inputs: Array<{ target: TargetConfig; db: Database }>) => Promise<T>,
): Promise<T> {
  const inputs = targets.map((target) => ({ target, db: open(target) }))
  try {
    return await work(inputs)
  } finally {
    await Promise.all(inputs.map(({ db }) => db.close().catch(() => undefined)))
  }
}
