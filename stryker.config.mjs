// Mutation testing over the modules where a silent bug costs most: `npm run test:mutation`
// (slow: not part of `npm test` or CI; docs/testing.md has the latest scores and run time).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts' },
  plugins: ['@stryker-mutator/vitest-runner'],
  coverageAnalysis: 'perTest',
  mutate: ['src/sessions/sweep.ts', 'src/db/queries/sessions.ts', 'src/pool/held-detector.ts'],
  // Static mutants (module-level constants) need every test re-run per mutant: too slow here.
  ignoreStatic: true,
  concurrency: 1,
  timeoutMS: 60_000,
  reporters: ['clear-text', 'progress-append-only', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
}
