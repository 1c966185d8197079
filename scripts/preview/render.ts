/**
 * The dashboard previews in docs/images: each dashboard's page (page.ts, transpiled by TypeScript,
 * with uPlot and the collected series inlined, so Chromium fetches nothing) screenshotted by
 * headless Chromium.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import ts from 'typescript'
import { ensureChromium, launchChromium } from './chromium.js'
import type { PreviewDashboard } from './page.js'

const require = createRequire(import.meta.url)
const read = (path: string) => readFileSync(path, 'utf8')

function pageScript(): string {
  const source = readFileSync(new URL('page.ts', import.meta.url), 'utf8')
  const output = ts.transpileModule(source, {
    fileName: 'page.ts',
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  })
  return output.outputText
}

/** JSON inside a <script>: `<` escaped so no value can close the element. */
const inlineJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c')

export function previewHtml(dashboard: PreviewDashboard): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><style>${read(require.resolve('uplot/dist/uPlot.min.css'))}</style></head>
<body><div id="dashboard"></div>
<script>${read(require.resolve('uplot/dist/uPlot.iife.min.js'))}</script>
<script>window.preview = ${inlineJson(dashboard)}</script>
<script type="module">${pageScript()}</script>
</body></html>`
}

/** Writes `<outDir>/<uid>.png` for each dashboard; returns the paths written. */
export async function renderPreviews(dashboards: Array<{ uid: string; preview: PreviewDashboard }>, outDir: string): Promise<string[]> {
  const browser = await launchChromium(ensureChromium())
  try {
    const written: string[] = []
    for (const { uid, preview } of dashboards) {
      const path = join(outDir, `${uid}.png`)
      writeFileSync(path, await browser.screenshot(previewHtml(preview), preview.width))
      written.push(path)
    }
    return written
  } finally {
    await browser.close()
  }
}
