// The training loop on the golden tiny models: full fine-tuning overfits 32
// short sequences, LoRA lowers a validation loss, gradient accumulation equals
// one big batch, tensors do not leak, and pause / resume / cancel (in process;
// the killed-process case is train-resume.test.ts).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { CANCEL, train, validationLoss } from '../engine/train/trainer';
import { DEFAULT_TRAIN_OPTIONS } from '../engine/train/config';
import { lossAndGrads, type GradMode } from '../engine/train/backprop';
import { disposeMicroBatch, learnedTokens, microBatch } from '../engine/train/batching';
import { readTrainerState, TRAINER_STATE } from '../engine/train/checkpoints';
import { quietContext } from '../engine/jobs/job';
import type { TfjsSteps } from '../engine/train/tfjs-steps';
import { RUNTIME_NAMES } from '../engine/runtime/runtime';
import { MemoryRunLog, disposeInputs, randomSequences, tinyInputs } from './helpers/train-run';
import { tempDir } from './helpers/train-fixtures';

// Tiny models: one wasm thread is faster than two fighting over the cores with the other test files.
process.env.MLW_THREADS ??= '1';
const tmp = tempDir('trainer');
beforeAll(async () => {
  await initBackend();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The trainer's tests run on every runtime (tfjs-specific ones say so). */
const RUNTIMES = [...RUNTIME_NAMES];

/** Walks around a fixed cycle of 10 token ids from random starting points: one rule for train and validation. */
function cycleSequences(n: number, length: number, seed: number) {
  const cycle = [100, 137, 42, 311, 7, 260, 480, 95, 199, 333];
  return randomSequences(n, 1, 13, seed).map((s) => ({
    ids: Array.from({ length }, (_, i) => cycle[(s.ids[0] + i) % 10]),
    learn: new Uint8Array(length).fill(1),
  }));
}

describe.each(RUNTIMES)('learning on %s', (runtime) => {
  it('full fine-tuning overfits 32 short sequences to near-zero loss', async () => {
    const log = new MemoryRunLog(path.join(tmp, `${runtime}-overfit`));
    const adamw = { ...DEFAULT_TRAIN_OPTIONS.adamw, weightDecay: 0 };
    const inp = await tinyInputs({
      runtime,
      method: 'full',
      train: randomSequences(32, 8, 512, 1),
      log,
      options: { maxSteps: 120, batchSize: 16, lr: 1e-2, warmupSteps: 10, adamw },
    });
    const result = await train(inp, quietContext());
    const loss = log.curve('loss');
    expect(result.status).toBe('completed');
    expect(loss[0]).toBeGreaterThan(5);
    expect(loss[loss.length - 1]).toBeLessThan(0.05);
    await disposeInputs(inp);
  });

  it('LoRA lowers the validation loss of a tiny model on a small dataset', async () => {
    const log = new MemoryRunLog(path.join(tmp, `${runtime}-lora`));
    const val = cycleSequences(8, 12, 2);
    const inp = await tinyInputs({
      runtime,
      method: 'lora',
      lora: { rank: 8, alpha: 16, dropout: 0.05, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] },
      train: cycleSequences(24, 12, 1),
      val,
      log,
      options: { maxSteps: 30, batchSize: 8, lr: 1e-2, evalEvery: 15 },
    });
    const before = await validationLoss(inp.steps, val, 8, 0);
    await train(inp, quietContext());
    const after = log.curve('val_loss');
    expect(after).toHaveLength(2); // steps 15 and 30
    expect(after[1]).toBeLessThan(before / 2);
    expect(log.curve('val_ppl')[1]).toBeCloseTo(Math.exp(after[1]), 6);
    await disposeInputs(inp);
  });
});

describe('steps', () => {
  it('accumulating 4 micro-batches of 2 gives the loss and gradients of one batch of 8 (uneven lengths)', async () => {
    const rows = randomSequences(8, 9, 512, 3).map((r, i) => ({ ids: r.ids.slice(0, 4 + i), learn: r.learn.slice(0, 4 + i) }));
    const inp = await tinyInputs({ method: 'full', train: rows, log: new MemoryRunLog(tmp), options: {} });
    const { model, trainable } = (inp.steps as TfjsSteps).inp;
    const denom = learnedTokens(rows);
    const whole = microBatch(rows, denom);
    const one = lossAndGrads(model, trainable, whole, 'tape');
    let loss = 0;
    const sum = new Map<string, tf.Tensor>();
    for (let i = 0; i < 8; i += 2) {
      const mb = microBatch(rows.slice(i, i + 2), denom);
      const r = lossAndGrads(model, trainable, mb, 'recompute');
      loss += r.loss;
      for (const [n, g] of r.grads) {
        const prev = sum.get(n);
        sum.set(n, prev ? tf.add(prev, g) : g);
        if (prev) tf.dispose([prev, g]);
      }
      disposeMicroBatch(mb);
    }
    expect(Math.abs(loss - one.loss)).toBeLessThan(1e-5);
    for (const [n, g] of one.grads) {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, sum.get(n)!))).dataSync()[0]);
      expect(d, n).toBeLessThan(1e-5);
    }
    tf.dispose([...one.grads.values(), ...sum.values()]);
    disposeMicroBatch(whole);
    await disposeInputs(inp);
  });

  it.each([
    ['full', 'tape'],
    ['full', 'recompute'],
    ['lora', 'tape'],
    ['lora', 'recompute'],
  ] as const)('%s training with %s backprop keeps tf.memory().numTensors flat across steps', async (method, gradMode: GradMode) => {
    const counts: number[] = [];
    const log = new MemoryRunLog(tmp, (p) => p[0].name === 'loss' && counts.push(tf.memory().numTensors));
    const inp = await tinyInputs({
      method,
      lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q', 'v', 'down'] },
      model: 'tiny-ls-immediate',
      train: randomSequences(12, 10, 512, 4),
      log,
      gradMode,
      options: { maxSteps: 6, batchSize: 2, gradAccum: 2 },
    });
    const before = tf.memory().numTensors;
    await train(inp, quietContext());
    expect(new Set(counts).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before); // the optimizer's moments are gone too
    await disposeInputs(inp);
  });
});

describe.each(RUNTIMES)('pause, resume, cancel on %s', (runtime) => {
  it('a paused run writes a checkpoint and, resumed from it, continues exactly like an uninterrupted run', async () => {
    const data = { train: randomSequences(20, 10, 512, 5), val: randomSequences(4, 10, 512, 6) };
    const options = { maxSteps: 10, batchSize: 4, gradAccum: 2, lr: 3e-3, warmupSteps: 3, evalEvery: 4 };
    const lora = { rank: 4, alpha: 8, dropout: 0.1, targets: ['q', 'v'] as const };
    for (const method of ['full', 'lora'] as const) {
      const whole = new MemoryRunLog(path.join(tmp, `${runtime}-whole-${method}`));
      const ref = await tinyInputs({ runtime, method, lora: { ...lora, targets: [...lora.targets] }, ...data, log: whole, options });
      await train(ref, quietContext());
      await disposeInputs(ref);

      const controller = new AbortController();
      const first = new MemoryRunLog(path.join(tmp, `${runtime}-first-${method}`), (p) => p[0].name === 'loss' && p[0].step === 4 && controller.abort());
      const a = await tinyInputs({ runtime, method, lora: { ...lora, targets: [...lora.targets] }, ...data, log: first, options });
      const paused = await train(a, { signal: controller.signal, progress: () => {} });
      await disposeInputs(a);
      expect(paused.status).toBe('paused');
      expect(first.saved.map((s) => s.step)).toEqual([4]);
      expect(readTrainerState(first.saved[0].dir).step).toBe(4);

      const second = new MemoryRunLog(path.join(tmp, `${runtime}-second-${method}`));
      const b = await tinyInputs({ runtime, method, lora: { ...lora, targets: [...lora.targets] }, ...data, log: second, options, from: first.saved[0].dir });
      const done = await train(b, quietContext());
      await disposeInputs(b);
      expect(done.status).toBe('completed');
      const resumed = [...first.curve('loss'), ...second.curve('loss')];
      const reference = whole.curve('loss');
      expect(resumed).toHaveLength(10);
      resumed.forEach((l, i) => expect(Math.abs(l - reference[i]), `${method} step ${i + 1}`).toBeLessThan(1e-5));
      if (runtime === 'onnx') expect(resumed, 'bit for bit on ONNX Runtime').toEqual(reference);
      expect(second.curve('lr')).toEqual(whole.curve('lr').slice(4));
      expect(second.curve('val_loss')).toEqual(whole.curve('val_loss').slice(1));
    }
  });

  it('a cancelled run stops without writing a checkpoint', async () => {
    const controller = new AbortController();
    const log = new MemoryRunLog(path.join(tmp, `${runtime}-cancel`), (p) => p[0].name === 'loss' && p[0].step === 2 && controller.abort(CANCEL));
    const inp = await tinyInputs({ runtime, method: 'full', train: randomSequences(20, 6, 512, 7), log, options: { maxSteps: 10, batchSize: 2 } });
    const result = await train(inp, { signal: controller.signal, progress: () => {} });
    await disposeInputs(inp);
    expect(result.status).toBe('cancelled');
    expect(result.state.step).toBe(2);
    expect(log.saved).toEqual([]);
    expect(fs.existsSync(path.join(tmp, `${runtime}-cancel`, 'step-2', TRAINER_STATE))).toBe(false);
  });
});
