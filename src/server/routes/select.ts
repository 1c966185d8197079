import { WardenError } from '../../core/errors.js'
import type { TableRef } from '../../fleet/targets.js'
import type { AppDeps } from '../deps.js'
import { ApiError } from '../errors.js'

const API = { target: 'target', table: 'table' }

/** The table a request names (?target=&table=, or the body's), or a 400 that lists the choices. */
export function selectRef(deps: AppDeps, selection: { target?: string; table?: string }): TableRef {
  try {
    return deps.fleet.select({ ...selection, spelling: API })
  } catch (error) {
    if (error instanceof WardenError) throw new ApiError(400, 'invalid_request', error.message)
    throw error
  }
}
