// A run's whole curves from the command line (`mlw runs metrics <id>` as a
// table, --csv and --json), and the one size unit the app, the CLI and the
// reports share.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import type { MetricCurve } from '../engine/store/records';
import { formatBytes, formatGigabytes } from '../engine/protocol/sizes';
import { mlwProcess, type MlwResult } from './helpers/mlw-process';

let root: string;
let home: string;
let runId: number;
let emptyRunId: number;
const T0 = Date.UTC(2026, 11, 2, 12, 0, 0);

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-cli-metrics-'));
  home = path.join(root, 'home');
  const store = openStore({ home });
  try {
    store.models.add({ name: 'MobileLLM-125M', source: 'downloaded', format: 'safetensors', path: '/models/125m', bytes: 250_000_000 });
    const run = store.runs.create({ kind: 'finetune', config: { method: 'lora' } });
    runId = run.id;
    store.metrics.append(run.id, [
      { step: 1, name: 'loss', value: 2.5, wallTime: T0 + 1000 },
      { step: 1, name: 'lr', value: 0.0005, wallTime: T0 + 1000 },
      { step: 2, name: 'loss', value: 2.25, wallTime: T0 + 2000 },
      { step: 2, name: 'lr', value: 0.001, wallTime: T0 + 2000 },
      { step: 2, name: 'val_loss', value: 2.4, wallTime: T0 + 2500 },
      { step: 3, name: 'loss', value: NaN, wallTime: T0 + 3000 },
    ]);
    emptyRunId = store.runs.create({ kind: 'finetune', config: {} }).id;
  } finally {
    store.close();
  }
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const mlw = (...args: string[]): Promise<MlwResult> => mlwProcess([...args, '--home', home]);

describe('mlw runs metrics', () => {
  it('--csv: a header of step, wall_time and one column per metric, then one row per step (empty where a metric has no point)', async () => {
    const r = await mlw('runs', 'metrics', String(runId), '--csv');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      'step,wall_time,loss,lr,val_loss',
      `1,${new Date(T0 + 1000).toISOString()},2.5,0.0005,`,
      `2,${new Date(T0 + 2000).toISOString()},2.25,0.001,2.4`,
      `3,${new Date(T0 + 3000).toISOString()},NaN,,`,
    ]);
  });

  it('--json: every curve whole, with its steps, values and wall times', async () => {
    const r = await mlw('runs', 'metrics', String(runId), '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { runId: number; curves: MetricCurve[] };
    expect(out.runId).toBe(runId);
    expect(out.curves.map((c) => c.name)).toEqual(['loss', 'lr', 'val_loss']);
    expect(out.curves[0]).toEqual({ name: 'loss', steps: [1, 2, 3], values: [2.5, 2.25, null], wallTimes: [T0 + 1000, T0 + 2000, T0 + 3000] });
  });

  it('--metric picks curves, and a table is the default', async () => {
    const csv = await mlw('runs', 'metrics', String(runId), '--metric', 'val_loss,loss', '--csv');
    expect(csv.stdout.split('\n')[0]).toBe('step,wall_time,val_loss,loss');
    const table = await mlw('runs', 'metrics', String(runId), '--metric', 'loss');
    expect(table.stdout.trimEnd().split('\n')).toEqual(['STEP  LOSS', '1     2.500', '2     2.250', '3     NaN']);
  });

  it('says what is wrong in one line: an unknown metric, both formats, a run without metrics', async () => {
    const unknown = await mlw('runs', 'metrics', String(runId), '--metric', 'acc');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trimEnd()).toMatch(/run \d+ has no metric acc \(it has loss, lr, val_loss\)$/);
    const both = await mlw('runs', 'metrics', String(runId), '--csv', '--json');
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--csv and --json cannot be combined/);
    const empty = await mlw('runs', 'metrics', String(emptyRunId));
    expect(empty.stdout).toBe(`run ${emptyRunId} has no metrics\n`);
  });
});

describe('sizes', () => {
  it('are decimal units everywhere: 1 MB is 1,000,000 bytes', () => {
    expect(formatBytes(812)).toBe('812 B');
    expect(formatBytes(4_100_000)).toBe('4.1 MB');
    expect(formatBytes(12_345_678)).toBe('12.3 MB');
    expect(formatBytes(250_000_000)).toBe('250 MB');
    expect(formatBytes(1_600_000_000)).toBe('1.6 GB');
    expect(formatBytes(2 ** 20)).toBe('1.0 MB');
    expect(formatGigabytes(3_210_000_000)).toBe('3.21 GB');
  });

  it('the CLI prints them as the app does', async () => {
    const r = await mlw('models');
    expect(r.stdout.split('\n')[1]).toMatch(/\b250 MB\b/);
  });

  it('the app takes its formatter from the same module', () => {
    const src = fs.readFileSync(path.join(import.meta.dirname, '../renderer/src/lib/app.svelte.ts'), 'utf8');
    expect(src).toMatch(/export \{ formatBytes \} from '..\/..\/..\/engine\/protocol\/sizes'/);
  });
});
