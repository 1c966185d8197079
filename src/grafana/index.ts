import { appsDashboard } from './dashboards/apps.js'
import { llmDashboard } from './dashboards/llm.js'
import { poolDashboard } from './dashboards/pool.js'
import { sessionsDashboard } from './dashboards/sessions.js'
import type { Dashboard } from './model.js'

export type { Dashboard, Panel, Target, Variable } from './model.js'

/** Relative to the repository root: the committed output of `scripts/render-dashboards.ts json`. */
export const DASHBOARDS_DIR = 'grafana/dashboards'

/** Every dashboard Warden ships, in the order the docs list them. */
export function buildDashboards(): Dashboard[] {
  return [sessionsDashboard(), poolDashboard(), llmDashboard(), appsDashboard()]
}

/** One file per dashboard, named after its uid: what the file provider and a manual import read. */
export const dashboardFileName = (dashboard: Pick<Dashboard, 'uid'>): string => `${dashboard.uid}.json`

/** Stable text: two-space JSON and a final newline, so a regenerated file diffs only where a panel changed. */
export const serializeDashboard = (dashboard: Dashboard): string => `${JSON.stringify(dashboard, null, 2)}\n`
