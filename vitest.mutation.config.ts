import { defineConfig } from 'vitest/config'

// The test files Stryker runs against mutants: the ones that import the mutated modules from src/.
// Tests that run the CLI or the server as a subprocess execute dist/, which Stryker does not mutate,
// so they cannot kill a mutant and would only cost time here (they still run in `npm test`).
export default defineConfig({
  test: {
    include: [
      'test/sweep.test.ts',
      'test/scheduler.test.ts',
      'test/scheduler-fleet.test.ts',
      'test/held-during-llm-call.test.ts',
      'test/instrumented-pool.test.ts',
      'test/chat-turns.test.ts',
      'test/chat-llm-failures.test.ts',
      'test/doctor.test.ts',
      'test/headroom.test.ts',
      'test/mapping.test.ts',
    ],
    globalSetup: ['test/setup/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
  },
})
