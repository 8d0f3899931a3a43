// Resume after the process was killed: a LoRA fine-tuning run (with dropout,
// so the random state matters) is SIGKILLed mid-run, the store marks it
// interrupted, it resumes from its newest checkpoint, and the loss at every
// step — and the final adapter — equal an uninterrupted run's.
import { spawnSync } from 'node:child_process';
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
import { pretrain, type PretrainInput } from '../engine/train/pretrain';
import { ADAPTER_WEIGHTS } from '../engine/train/lora';
import { maxAbsDiff } from './helpers/golden';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { spawnMlw, waitForStep } from './helpers/train-spawn';
import { verifyCheckpoint } from './helpers/verify-checkpoint';

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
/** The small disks mounted for the disk-full cases, unmounted before the folder goes. */
const mounts: string[] = [];
afterAll(() => {
  for (const dir of mounts) spawnSync('umount', [dir]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

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

/** A process that queues a fine-tuning run and dies before starting it. */
function queueAndDie(home: string, cfg: FinetuneInput): void {
  const script = path.join(tmp, 'queue-and-die.ts');
  const root = path.resolve(import.meta.dirname, '..');
  fs.writeFileSync(
    script,
    [
      `import { openStore } from ${JSON.stringify(path.join(root, 'engine/store/open.ts'))};`,
      `import { FinetuneConfig } from ${JSON.stringify(path.join(root, 'engine/train/config.ts'))};`,
      `const store = openStore({ home: ${JSON.stringify(home)} });`,
      `store.runs.create({ kind: 'finetune', config: FinetuneConfig.parse(${JSON.stringify(cfg)}) });`,
      `process.kill(process.pid, 'SIGKILL');`,
    ].join('\n'),
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: root, encoding: 'utf8' });
  expect(r.signal, r.stderr).toBe('SIGKILL');
}

describe('a process killed between queueing a run and starting it', () => {
  it('leaves a run that the next writer interrupts and that resumes from scratch', async () => {
    const short: FinetuneInput = { ...config, train: { ...config.train, maxSteps: 6, evalEvery: 0, saveEvery: 3 } };
    const home = path.join(tmp, 'queued');
    queueAndDie(home, short);
    const store = openStore({ home });
    try {
      expect(store.reconcileReport!.interrupted).toMatchObject([{ run: { id: 1, status: 'interrupted' }, resumeFrom: null }]);
      const resumed = await resumeFinetune(store, 1, quietContext());
      expect(resumed).toMatchObject({ runId: 1, status: 'completed', step: 6 });
      expect(store.runs.get(1)).toMatchObject({ status: 'completed', error: null });
      expect(store.metrics.curve(1, 'loss').steps).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      store.close();
    }
  });
});

/** Mounts a small tmpfs (a real file system that fills up) at `dir`; false where this process may not mount. */
function mountSmallDisk(dir: string): boolean {
  if (process.getuid?.() !== 0) return false;
  fs.mkdirSync(dir, { recursive: true });
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]).status !== 0) return false;
  mounts.push(dir);
  return true;
}

/** Writes into `dir` until its file system is full. */
function fillDisk(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  try {
    for (;;) fs.writeSync(fd, Buffer.alloc(64 * 1024, 1));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

describe('a disk that fills up during a run', () => {
  const home = path.join(tmp, 'disk-full');
  const checkpoints = path.join(home, 'checkpoints');
  const mounted = mountSmallDisk(checkpoints);

  it.skipIf(!mounted)('interrupts it at the checkpoint that does not fit; freed, it resumes and completes', async () => {
    const short: FinetuneInput = { ...config, train: { ...config.train, maxSteps: 12, evalEvery: 0, saveEvery: 4 } };
    const store = openStore({ home });
    try {
      let filler: string | null = null;
      const ctx = quietContext();
      const fillAfterFirstCheckpoint = { ...ctx, progress: (p: { done?: number }) => void (p.done === 6 && !filler && (filler = fillDisk(checkpoints))) };
      await expect(startFinetune(store, short, fillAfterFirstCheckpoint)).rejects.toMatchObject({ code: 'ENOSPC' });
      const run = store.runs.get(1);
      expect(run).toMatchObject({ status: 'interrupted', error: expect.stringMatching(/^disk full: .*ENOSPC.* resume run 1$/) });
      expect(store.checkpoints.list(1).map((c) => c.step)).toEqual([4]);
      expect(await verifyCheckpoint(store.checkpoints.list(1)[0])).toMatchObject({ ok: true });
      expect(fs.readdirSync(path.join(checkpoints, '1'))).toEqual(['step-4']); // no half-written step-8

      fs.rmSync(filler!);
      const resumed = await resumeFinetune(store, 1, quietContext());
      expect(resumed).toMatchObject({ status: 'completed', step: 12 });
      expect(store.runs.get(1)).toMatchObject({ status: 'completed', error: null });
      expect(store.metrics.curve(1, 'loss').steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    } finally {
      store.close();
    }
  });
});

describe('a disk that is full before a pre-training run starts', () => {
  const home = path.join(tmp, 'pretrain-full');
  const runs = path.join(home, 'runs');
  const mounted = mountSmallDisk(runs);

  it.skipIf(!mounted)('interrupts the queued run while writing its base model; freed, it resumes and completes', async () => {
    const corpus = path.join(tmp, 'corpus.txt');
    const words = ['the', 'sea', 'ship', 'whale', 'captain', 'wind', 'wave', 'deck', 'rope', 'storm'];
    fs.writeFileSync(
      corpus,
      Array.from({ length: 200 }, (_, i) => Array.from({ length: 20 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ')).join('\n'),
    );
    const input: PretrainInput = {
      corpus: [corpus],
      out: path.join(tmp, 'pretrained'),
      vocabSize: 300,
      hiddenSize: 32,
      intermediateSize: 64,
      numBlocks: 2,
      numHeads: 2,
      numKvHeads: 1,
      seqLen: 32,
      train: { maxSteps: 3, batchSize: 4, warmupSteps: 1, evalEvery: 0, saveEvery: 2 },
    };
    const store = openStore({ home });
    try {
      const filler = fillDisk(runs);
      await expect(pretrain(store, input, quietContext())).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(store.runs.get(1)).toMatchObject({ status: 'interrupted', startedAt: null, error: expect.stringMatching(/^disk full: .*ENOSPC/) });
      expect(fs.readdirSync(path.join(runs, '1'))).toEqual([]); // no half-written base model, no leftovers

      fs.rmSync(filler);
      const resumed = await pretrain(store, { resumeRunId: 1 }, quietContext());
      expect(resumed).toMatchObject({ runId: 1, status: 'completed', step: 3 });
      expect(store.runs.get(1)).toMatchObject({ status: 'completed', error: null });
    } finally {
      store.close();
    }
  });
});
