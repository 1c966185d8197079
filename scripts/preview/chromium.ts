/**
 * Debian's Chromium, found or installed, and driven headless through playwright-core (which never
 * downloads a browser of its own): the dashboard previews are screenshots of pages it renders.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

/** What to run is all the user needs to see: no stack trace. */
export class ChromiumMissing extends Error {
  override name = 'ChromiumMissing'
}
const INSTALL = 'apt-get install -y chromium'

/**
 * /usr/bin/chromium, installed with apt-get when it is missing and we are root. Anyone else is
 * stopped with the command to run, before the minutes of data collection that need it after.
 */
export function ensureChromium(log: (line: string) => void = console.log): string {
  if (existsSync(CHROMIUM)) return CHROMIUM
  if (process.getuid?.() !== 0) throw new ChromiumMissing(`${CHROMIUM} not found; install Debian's chromium package as root: ${INSTALL}`)
  const apt = (...args: string[]) =>
    spawnSync('apt-get', args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 64 << 20 })
  log(`${CHROMIUM} not found: ${INSTALL}`)
  // A fresh machine has no package lists yet; the install is tried once more after an update.
  let result = apt('install', '-y', '-qq', 'chromium')
  if (result.status !== 0) {
    apt('update', '-qq')
    result = apt('install', '-y', '-qq', 'chromium')
  }
  if (result.status !== 0 || !existsSync(CHROMIUM))
    throw new Error(`${INSTALL} failed (exit ${result.status}):\n${result.stdout}\n${result.stderr}`.trimEnd())
  return CHROMIUM
}

/** Everything Chromium would otherwise fetch, sync or update on its own is off; the page is set inline. */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export interface Screenshotter {
  /** a PNG of the whole page `html`, once the page has set window.previewReady */
  screenshot: (html: string, width: number) => Promise<Buffer>
  close: () => Promise<void>
}

export async function launchChromium(executablePath: string): Promise<Screenshotter> {
  // A fresh profile each run: nothing from an earlier run (or another user) changes the pictures.
  const profile = mkdtempSync(join(tmpdir(), 'warden-chromium-'))
  const context = await chromium
    .launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: FLAGS,
      deviceScaleFactor: 1,
      colorScheme: 'dark',
      offline: true,
    })
    .catch((error: unknown) => {
      rmSync(profile, { recursive: true, force: true })
      throw error
    })
  return {
    async screenshot(html, width) {
      const page = await context.newPage()
      try {
        const errors: string[] = []
        page.on('pageerror', (error) => errors.push(error.message))
        page.on('console', (message) => {
          if (message.type() === 'error') errors.push(message.text())
        })
        await page.setViewportSize({ width, height: 800 })
        await page.setContent(html, { waitUntil: 'load' })
        await page.waitForFunction(() => window.previewReady === true || window.previewError !== undefined, undefined, {
          timeout: 30_000,
        })
        const failed = await page.evaluate(() => window.previewError)
        if (failed !== undefined || errors.length > 0) throw new Error(`the preview page failed: ${[failed, ...errors].join('\n')}`)
        return await page.screenshot({ fullPage: true, type: 'png' })
      } finally {
        await page.close()
      }
    },
    async close() {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
