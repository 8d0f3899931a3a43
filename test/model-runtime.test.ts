// Behaviour of the model at run time beyond the golden numbers: no tensor
// leaks while decoding, the cache equals a full forward, batches, sampling.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { generate } from '../engine/generate/generate';
import { sampleToken, seededRandom } from '../engine/generate/sampling';
import { goldenDir, maxAbsDiff } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

describe.each(TEST_BACKENDS)('backend %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('keeps tf.memory().numTensors flat over 50 decode steps', async () => {
    const { model } = loadModel(goldenDir('tiny-ls-immediate'));
    await generate(model, [1, 5, 9], { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, maxNewTokens: 2, stopAtEos: false });
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const cache = model.newCache();
    for (let i = 0; i < 50; i++) {
      const ids = tf.tensor2d([[3 + i]], [1, 1], 'int32');
      model.forward(ids, { cache, lastOnly: true }).dispose();
      ids.dispose();
      counts.push(tf.memory().numTensors);
    }
    // The cache holds 2 tensors per effective layer, whatever its length.
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(counts[counts.length - 1]).toBe(before + 2 * model.numLayers);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await generate(model, [1, 5, 9], { temperature: 0.8, topK: 20, topP: 0.9, repetitionPenalty: 1.2, maxNewTokens: 50, stopAtEos: false, seed: 1 });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('incremental decoding with the cache equals the full forward, in chunks of any size', () => {
    const { model } = loadModel(goldenDir('tiny-ls-reverse'));
    const seq = [1, 17, 33, 250, 7, 99, 401, 12, 5, 64, 300];
    const full = model.forward(tf.tensor2d([seq], [1, seq.length], 'int32'));
    const cache = model.newCache();
    const parts: tf.Tensor[] = [];
    for (const [a, b] of [
      [0, 4],
      [4, 5],
      [5, 9],
      [9, 11],
    ]) {
      parts.push(model.forward(tf.tensor2d([seq.slice(a, b)], [1, b - a], 'int32'), { cache }));
    }
    const joined = tf.concat(parts, 1);
    expect(maxAbsDiff(joined.dataSync(), full.dataSync())).toBeLessThan(1e-4);
    cache.truncate(5);
    const redo = model.forward(tf.tensor2d([seq.slice(5)], [1, 6], 'int32'), { cache });
    expect(maxAbsDiff(redo.dataSync(), tf.slice(full, [0, 5, 0], [1, 6, -1]).dataSync())).toBeLessThan(1e-4);
    cache.dispose();
    model.dispose();
  });

  it('a batch gives the same logits as its rows one by one', () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const rows = [
      [1, 2, 3, 4, 5, 6],
      [9, 8, 7, 6, 5, 4],
    ];
    const batch = model.forward(tf.tensor2d(rows, [2, 6], 'int32'));
    rows.forEach((r, i) => {
      const one = model.forward(tf.tensor2d([r], [1, 6], 'int32'));
      expect(maxAbsDiff(one.dataSync(), tf.slice(batch, [i, 0, 0], [1, 6, -1]).dataSync())).toBeLessThan(1e-5);
    });
    model.dispose();
  });

  it('refuses a sequence longer than the context', () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const T = model.config.maxPositions + 1;
    expect(() => model.forward(tf.zeros([1, T], 'int32') as tf.Tensor2D)).toThrow(/exceeds the model's 256-token context/);
    model.dispose();
  });
});

describe('sampling', () => {
  const logits = () => Float32Array.from([1, 3, 2, 0.5, 2.9]);
  it('temperature 0 is argmax; repetition penalty divides positive logits', () => {
    expect(sampleToken(logits(), [], { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 }, Math.random)).toBe(1);
    expect(sampleToken(logits(), [1], { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 2 }, Math.random)).toBe(4);
  });
  it('top-k 1 and a tiny top-p are greedy; sampling follows the seed', () => {
    for (let s = 0; s < 20; s++) {
      expect(sampleToken(logits(), [], { temperature: 1, topK: 1, topP: 1, repetitionPenalty: 1 }, seededRandom(s))).toBe(1);
      expect(sampleToken(logits(), [], { temperature: 1, topK: 0, topP: 0.01, repetitionPenalty: 1 }, seededRandom(s))).toBe(1);
    }
    const draw = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 30 }, () => sampleToken(logits(), [], { temperature: 1.5, topK: 0, topP: 1, repetitionPenalty: 1 }, r));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(new Set(draw(7)).size).toBeGreaterThan(2);
    // top-k 2 only ever picks the two best
    const r = seededRandom(3);
    for (let i = 0; i < 100; i++) expect([1, 4]).toContain(sampleToken(logits(), [], { temperature: 5, topK: 2, topP: 1, repetitionPenalty: 1 }, r));
  });
});
