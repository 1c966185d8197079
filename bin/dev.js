#!/usr/bin/env -S node --import tsx
// Runs the TypeScript sources directly (no build step) for development.
//
// With an oclif.manifest.json, which npm run build writes for dist, oclif takes the command list,
// the help and the files to load from it: here the root plugin is loaded with the manifest
// ignored, so the sources are what runs and what the help shows.
import { fileURLToPath } from 'node:url'
import { execute, Plugin } from '@oclif/core'

// execute({ development: true }) sets this too, but only after the plugins below are loaded.
process.env.NODE_ENV = 'development'
const root = fileURLToPath(new URL('..', import.meta.url))
const warden = new Plugin({ root, isRoot: true, ignoreManifest: true })
await warden.load()
const plugins = new Map([[warden.name, warden]])
for (const name of warden.pjson.oclif.plugins ?? []) {
  const plugin = new Plugin({ root, name, type: 'core' })
  await plugin.load()
  plugins.set(plugin.name, plugin)
}

await execute({ development: true, loadOptions: { root, plugins } })
