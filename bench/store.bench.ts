// The store's metric path: appending 100k metric rows (one transaction, on a
// real database file with synchronous=FULL) and reading one run's loss curve
// of 100k points back, as the Runs page charts it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../engine/store/open';
import type { MetricPoint } from '../engine/store/records';
import { median, timeRuns } from './harness';
import type { Suite } from './suites';

const ROWS = 100_000;
const RUNS = 7;

export const suite: Suite = {
  name: 'store',
  async run(emit) {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-bench-store-'));
    const store = openStore({ home });
    try {
      const points: MetricPoint[] = Array.from({ length: ROWS }, (_, step) => ({ step, name: 'loss', value: 4 / (1 + step / 500) }));
      // Each insert goes to a fresh run, so every run measures inserting, not overwriting.
      const insertMs = await timeRuns(() => store.metrics.append(store.runs.create({ kind: 'pretrain' }).id, points), RUNS);
      emit({ what: 'insert metric rows', backend: 'sqlite', shape: '100k rows', median: +median(insertMs).toFixed(1), unit: 'ms', runs: RUNS });

      const runId = store.runs.list()[0].id;
      const readMs = await timeRuns(() => {
        if (store.metrics.curve(runId, 'loss').steps.length !== ROWS) throw new Error('the curve lost points');
      }, RUNS);
      emit({ what: 'read loss curve', backend: 'sqlite', shape: '100k rows', median: +median(readMs).toFixed(1), unit: 'ms', runs: RUNS });
    } finally {
      store.close();
      fs.rmSync(home, { recursive: true, force: true });
    }
  },
};
