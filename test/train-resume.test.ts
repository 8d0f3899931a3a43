// Resume after the process was killed: a LoRA fine-tuning run (with dropout,
// so the random state matters) is SIGKILLed mid-run, the store marks it
// interrupted, it resumes from its newest checkpoint, and the loss at every
// step — and the final adapter — equal an uninterrupted run's.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { openStore } from '../engine/store/open';
import { quietContext } from '../engine/jobs/job';
import { readSafetensors } from '../engine/io/safetensors';
import { toFloat32 } from '../engine/io/raw-tensor';
import { resumeFinetune, startFinetune } from '../engine/train/run';
import type { FinetuneInput } from '../engine/train/config';
import { ADAPTER_WEIGHTS } from '../engine/train/lora';
import { maxAbsDiff } from './helpers/golden';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { spawnMlw, waitForStep } from './helpers/train-spawn';

process.env.MLW_THREADS ??= '1'; // the child inherits it: both runs compute alike
const tmp = tempDir('resume');
const model = tinyModelDir(tmp);
const data = writeJsonl(path.join(tmp, 'train.jsonl'), arithmeticChats(64));
const STEPS = 40;
const config: FinetuneInput = {
  model,
  data,
  method: 'lora',
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q', 'v', 'gate'] },
  train: { maxSteps: STEPS, batchSize: 4, gradAccum: 2, lr: 5e-3, warmupSteps: 5, seed: 3, evalEvery: 10, saveEvery: 5, saveEveryMinutes: 0, keepLast: 2 },
};
const flags = [
  model,
  '--data',
  data,
  '--method',
  'lora',
  '--lora-rank',
  '4',
  '--lora-alpha',
  '8',
  '--lora-dropout',
  '0.1',
  '--lora-targets',
  'q,v,gate',
  '--max-steps',
  String(STEPS),
  '--batch-size',
  '4',
  '--grad-accum',
  '2',
  '--lr',
  '5e-3',
  '--warmup-steps',
  '5',
  '--seed',
  '3',
  '--eval-every',
  '10',
  '--save-every',
  '5',
  '--save-every-minutes',
  '0',
  '--keep-last',
  '2',
  '--json',
];

beforeAll(async () => {
  await initBackend();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function finalAdapter(dir: string): Map<string, Float32Array> {
  return new Map([...readSafetensors(path.join(dir, ADAPTER_WEIGHTS)).tensors].map(([n, t]) => [n, toFloat32(t, n)]));
}

describe('a killed training process', () => {
  it('resumes from its last checkpoint and matches an uninterrupted run at every step', async () => {
    // The uninterrupted reference.
    const refHome = path.join(tmp, 'ref');
    const refStore = openStore({ home: refHome });
    const ref = await startFinetune(refStore, config, quietContext());
    expect(ref.status).toBe('completed');
    const reference = refStore.metrics.curve(ref.runId, 'loss');
    const refVal = refStore.metrics.curve(ref.runId, 'val_loss');
    refStore.close();
    expect(reference.steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));

    // The same run in a process that is SIGKILLed after step 12 (checkpoints every 5 steps).
    const home = path.join(tmp, 'killed');
    const { child, done } = spawnMlw(['--home', home, 'finetune', ...flags]);
    const reached = await waitForStep(home, 1, 12, done);
    child.kill('SIGKILL');
    const exit = await done;
    expect(exit.signal).toBe('SIGKILL');
    expect(reached).toBeLessThan(STEPS);

    const store = openStore({ home }); // a writer reconciles: the dead run becomes interrupted
    try {
      expect(store.runs.get(1).status).toBe('interrupted');
      const from = store.checkpoints.resumePoint(1)!;
      expect(from.step % 5).toBe(0);
      expect(from.step).toBeGreaterThanOrEqual(10);
      const resumed = await resumeFinetune(store, 1, quietContext());
      expect(resumed.status).toBe('completed');
      expect(store.runs.get(1).status).toBe('completed');

      const curve = store.metrics.curve(1, 'loss');
      expect(curve.steps).toEqual(reference.steps);
      curve.values.forEach((v, i) => expect(Math.abs(v - reference.values[i]), `loss at step ${i + 1}`).toBeLessThan(1e-5));
      const val = store.metrics.curve(1, 'val_loss');
      expect(val.steps).toEqual(refVal.steps);
      val.values.forEach((v, i) => expect(Math.abs(v - refVal.values[i]), `val_loss at step ${val.steps[i]}`).toBeLessThan(1e-5));

      const mine = finalAdapter(resumed.checkpoint!);
      const theirs = finalAdapter(ref.checkpoint!);
      expect([...mine.keys()]).toEqual([...theirs.keys()]);
      for (const [name, values] of mine) expect(maxAbsDiff(values, theirs.get(name)!), name).toBeLessThan(1e-6);

      // Kept: the last 2 checkpoints and the best by validation loss.
      const kept = store.checkpoints.list(1);
      const best = kept.reduce((a, b) => ((b.metrics.val_loss ?? Infinity) < (a.metrics.val_loss ?? Infinity) ? b : a));
      expect(kept.map((c) => c.step).slice(-2)).toEqual([STEPS - 5, STEPS]);
      expect(kept.length).toBeLessThanOrEqual(3);
      expect(Math.min(...refVal.values)).toBeCloseTo(best.metrics.val_loss!, 5);
    } finally {
      store.close();
    }
  });
});
