import DbMigrate from '../src/commands/db/migrate.js'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Config, Help, type Command } from '@oclif/core'
import { describe, expect, it } from 'vitest'
import { ROOT, runCli } from './helpers/cli.js'
import WardenHelp from '../src/cli/help.js'

interface ManifestCommand {
  summary?: string
  description?: string
  flags: Record<string, unknown>
}
const readManifest = (root = ROOT) =>
  JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8')) as { commands: Record<string, ManifestCommand> }

/** Every command in src/commands, by oclif id ("sessions:sweep"). */
function sourceCommands(): Array<{ id: string; file: string }> {
  const dir = join(ROOT, 'src', 'commands')
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.ts'))
    .map((path) => ({ id: path.replace(/\.ts$/, '').split('/').join(':'), file: join(dir, path) }))
}

describe('command metadata', () => {
  it('the oclif manifest that bin/run.js answers --help from was built from the current sources (npm run build)', async () => {
    const manifest = readManifest()
    const commands = sourceCommands()
    expect(Object.keys(manifest.commands).sort()).toEqual(commands.map((c) => c.id).sort())
    for (const { id, file } of commands) {
      const Cmd = ((await import(pathToFileURL(file).href)) as { default: typeof Command & { enableJsonFlag?: boolean } }).default
      const flags = Object.keys({ ...Cmd.baseFlags, ...Cmd.flags, ...(Cmd.enableJsonFlag ? { json: true } : {}) }).sort()
      const built = manifest.commands[id]!
      expect(
        { summary: built.summary, description: built.description, flags: Object.keys(built.flags).sort() },
        `${id}: run npm run build`,
      ).toEqual({
        summary: Cmd.summary,
        description: Cmd.description,
        flags,
      })
    }
  })

  it('every command has a one-line summary, not repeated as the first line of its description', () => {
    for (const [id, command] of Object.entries(readManifest().commands)) {
      expect(command.summary, id).toMatch(/^[A-Z][^\n]{10,120}$/)
      expect(command.description?.split('\n')[0], id).not.toBe(command.summary)
    }
  })

  it("`warden --help` and each topic's --help list every command with its summary", async () => {
    const commands = Object.entries(readManifest().commands)
    const topics = [...new Set(commands.map(([id]) => (id.includes(':') ? id.split(':')[0]! : '')))]
    let listed = 0
    for (const topic of topics) {
      const result = await runCli(topic ? [topic, '--help'] : ['--help'], { env: { OCLIF_COLUMNS: '400' } })
      expect(result.code, result.stderr).toBe(0)
      for (const [id, command] of commands.filter(([id]) => (topic ? id.startsWith(`${topic}:`) : !id.includes(':')))) {
        expect(result.stdout, id).toMatch(new RegExp(`^  ${id.replace(':', ' ')} +${escape(command.summary!)}$`, 'm'))
        listed += 1
      }
    }
    expect(listed).toBe(commands.length)
  })
})

/** Help output as a Help class renders it, captured instead of printed (a fresh Config each time: showing help changes it). */
async function helpText(HelpClass: typeof Help, argv: string[]): Promise<string> {
  const lines: string[] = []
  const help = new HelpClass(await Config.load(ROOT), { maxWidth: 80 })
  ;(help as unknown as { log: (...args: string[]) => void }).log = (...args) => lines.push(args.join(' '))
  await help.showHelp(argv)
  return lines.join('\n')
}

describe('the help class (src/cli/help.ts, configured as oclif.helpClass)', () => {
  it("prints exactly what oclif's own Help prints, for the root, every topic and every command", async () => {
    const ids = Object.keys(readManifest().commands)
    const subjects = [
      [],
      ...new Set(ids.filter((id) => id.includes(':')).map((id) => [id.split(':')[0]!])),
      ...ids.map((id) => id.split(':')),
    ]
    for (const argv of subjects) {
      const ours = await helpText(WardenHelp, argv)
      expect(ours, argv.join(' ')).toBe(await helpText(Help, argv))
      expect(ours.length).toBeGreaterThan(100)
    }
    // and it is the one the CLI uses
    const cli = await runCli(['sessions', 'sweep', '--help'], { env: { OCLIF_COLUMNS: '80' } })
    expect(cli.stdout.trimEnd()).toBe((await helpText(Help, ['sessions', 'sweep'])).trimEnd())
  })
})

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('bin/dev.js', () => {
  it('runs the TypeScript sources and their help, whatever oclif.manifest.json says', () => {
    // A copy with a manifest that disagrees with the sources: run.js believes it, dev.js must not.
    const copy = mkdtempSync(join(tmpdir(), 'warden-dev-'))
    try {
      for (const entry of ['package.json', 'tsconfig.json', 'bin', 'src', 'examples'])
        cpSync(join(ROOT, entry), join(copy, entry), { recursive: true })
      symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'))
      cpSync(join(ROOT, 'dist'), join(copy, 'dist'), { recursive: true })
      const manifest = readManifest()
      manifest.commands['db:migrate']!.summary = 'STALE SUMMARY FROM AN OLD BUILD'
      writeFileSync(join(copy, 'oclif.manifest.json'), JSON.stringify(manifest))

      const env = { ...process.env, NODE_ENV: undefined }
      const viaRun = spawnSync(process.execPath, [join(copy, 'bin', 'run.js'), 'db', 'migrate', '--help'], {
        cwd: copy,
        encoding: 'utf8',
        env,
      })
      expect(viaRun.stdout).toContain('STALE SUMMARY FROM AN OLD BUILD')

      const viaDev = spawnSync(process.execPath, ['--import', 'tsx', join(copy, 'bin', 'dev.js'), 'db', 'migrate', '--help'], {
        cwd: copy,
        encoding: 'utf8',
        env,
      })
      expect(viaDev.status, viaDev.stderr).toBe(0)
      expect(viaDev.stdout).not.toContain('STALE')
      // the summary the sources have now
      expect(viaDev.stdout).toContain(DbMigrate.summary)

      // And the command it runs is the .ts file: a source-only marker shows up.
      const file = join(copy, 'src', 'commands', 'db', 'migrate.ts')
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace('const { flags } = await this.parse(DbMigrate)', "$&\n    this.log('RUNNING SOURCES')"),
      )
      const ran = spawnSync(
        process.execPath,
        ['--import', 'tsx', join(copy, 'bin', 'dev.js'), 'db', 'migrate', '--database-url', 'postgres://x@127.0.0.1:1/x'],
        {
          cwd: copy,
          encoding: 'utf8',
          env,
        },
      )
      expect(ran.stdout, ran.stderr).toContain('RUNNING SOURCES')
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  })
})

describe('warden autocomplete (@oclif/plugin-autocomplete)', () => {
  it('prints the setup and builds a bash completion that completes commands and flags', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'warden-ac-'))
    try {
      const env = { XDG_CACHE_HOME: cache }
      const setup = await runCli(['autocomplete', 'bash'], { env })
      expect(setup.code, setup.stderr).toBe(0)
      expect(setup.stdout).toContain('warden autocomplete script bash')
      // No engine warning from a plugin that wants a newer Node.
      expect(setup.stderr).not.toMatch(/Node version|warn/i)

      const refresh = await runCli(['autocomplete', '--refresh-cache'], { env })
      expect(refresh.code, refresh.stderr).toBe(0)
      const script = join(cache, 'warden', 'autocomplete', 'functions', 'bash', 'warden.bash')
      const complete = (...words: string[]) =>
        spawnSync(
          'bash',
          [
            '-c',
            `source "$0"; COMP_WORDS=(${words.join(' ')}); COMP_CWORD=${words.length - 1}; _warden_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`,
            script,
          ],
          { encoding: 'utf8' },
        ).stdout.trim()
      expect(complete('warden', 'sessions', 'sw')).toBe('sweep')
      expect(complete('warden', 'sessions', 'sweep', '--ap')).toBe('--apply')
      expect(complete('warden', 'pool', 'w')).toBe('watch')
    } finally {
      rmSync(cache, { recursive: true, force: true })
    }
  })
})
