import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/build-ui.ts'],
    // Each file in its own process: tfjs backends and wasm heaps are per process.
    pool: 'forks',
    // Two cores: running files two at a time keeps wall time down without starving tfjs's threads.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
