// The Runs page's SQL: a run's name (rename, clear, the length the schema
// allows) and the overview of every run with its model's and dataset's names,
// its best validation loss and its last step; against real database files.
// And the same as `mlw runs rename` / `mlw runs delete`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { homeLayout } from '../engine/store/home';
import { RUN_NAME_MAX } from '../engine/store/records';
import type { Store } from '../engine/store/store';
import { mlwProcess } from './helpers/mlw-process';

let home: string;
let store: Store;

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-store-runs-'));
  store = openStore({ home });
});
afterEach(() => {
  store.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe('run names', () => {
  it('a new run has none; rename trims, keeps it across a reopen, and an empty name clears it', () => {
    const run = store.runs.create({ kind: 'finetune' });
    expect(run.name).toBeNull();
    expect(store.runs.rename(run.id, '  arithmetic, rank 16  ').name).toBe('arithmetic, rank 16');
    store.close();
    store = openStore({ home });
    expect(store.runs.get(run.id).name).toBe('arithmetic, rank 16');
    expect(store.runs.list()[0].name).toBe('arithmetic, rank 16');
    expect(store.runs.rename(run.id, '   ').name).toBeNull();
  });

  it('refuses an unknown run and a name past the limit; the database refuses one too', () => {
    const run = store.runs.create({ kind: 'quantize' });
    expect(() => store.runs.rename(run.id + 1, 'x')).toThrow(/run .*not found|no run/i);
    expect(() => store.runs.rename(run.id, 'x'.repeat(RUN_NAME_MAX + 1))).toThrow(`at most ${RUN_NAME_MAX} characters`);
    const db = new Database(homeLayout(home).db);
    try {
      expect(() => db.prepare('UPDATE runs SET name = ? WHERE id = ?').run('', run.id)).toThrow(/CHECK constraint/);
    } finally {
      db.close();
    }
  });
});

describe('run overview', () => {
  it("lists every run newest first with its model's and dataset's names, best validation loss (NaN ignored) and last step", () => {
    const model = store.models.add({ name: 'tiny', source: 'imported', format: 'safetensors', path: '/models/tiny' });
    const dataset = store.datasets.add({ name: 'arithmetic.jsonl', path: '/data/a.jsonl', format: 'jsonl-chat', sha256: 'a'.repeat(64), rowCount: 8 });
    const trained = store.runs.create({ kind: 'finetune', modelId: model.id, datasetId: dataset.id, config: { method: 'lora' } });
    store.metrics.append(trained.id, [
      { step: 1, name: 'loss', value: 3 },
      { step: 2, name: 'loss', value: 2.5 },
      { step: 7, name: 'loss', value: 2 },
      { step: 2, name: 'val_loss', value: 2.8 },
      { step: 4, name: 'val_loss', value: NaN },
      { step: 6, name: 'val_loss', value: 2.1 },
      { step: 9, name: 'lr', value: 1e-3 },
    ]);
    const bare = store.runs.create({ kind: 'eval' });

    const overview = store.runs.overview();
    expect(overview.map((o) => o.run.id)).toEqual([bare.id, trained.id]);
    expect(overview[0]).toEqual({ run: store.runs.get(bare.id), modelName: null, datasetName: null, bestValLoss: null, lastStep: null });
    expect(overview[1]).toEqual({ run: store.runs.get(trained.id), modelName: 'tiny', datasetName: 'arithmetic.jsonl', bestValLoss: 2.1, lastStep: 7 });
  });

  it('a deleted run leaves the overview, with its metrics', () => {
    const run = store.runs.create({ kind: 'finetune' });
    store.metrics.append(run.id, [{ step: 1, name: 'val_loss', value: 1 }]);
    store.runs.remove(run.id);
    expect(store.runs.overview()).toEqual([]);
    expect(store.metrics.names(run.id)).toEqual([]);
  });
});

describe('mlw runs rename / delete', () => {
  it('renames a run, and deletes one only with --yes, its checkpoint folders with it', async () => {
    const run = store.runs.create({ kind: 'finetune' });
    const folder = path.join(homeLayout(home).checkpoints, String(run.id));
    fs.mkdirSync(folder, { recursive: true });
    store.close();
    const renamed = await mlwProcess(['runs', 'rename', String(run.id), 'first try', '--home', home]);
    expect(renamed).toMatchObject({ code: 0, stdout: `run ${run.id} is now named "first try"\n` });
    const asked = await mlwProcess(['runs', 'delete', String(run.id), '--home', home]);
    expect(asked.code).not.toBe(0);
    expect(asked.stderr).toMatch(`this deletes run ${run.id} and its 0 checkpoint(s) for good: add --yes`);
    store = openStore({ home });
    expect(store.runs.get(run.id).name).toBe('first try');
    store.close();
    expect(await mlwProcess(['runs', 'delete', String(run.id), '--yes', '--home', home])).toMatchObject({ code: 0 });
    store = openStore({ home });
    expect(store.runs.list()).toEqual([]);
    expect(fs.existsSync(folder)).toBe(false);
  });
});
