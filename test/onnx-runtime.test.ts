// The ONNX Runtime path at run time: its KV cache against the full forward
// (chunks of any size, truncation, growth of the preallocated buffers), the
// two operator sets against each other, scoring against TensorFlow.js, and
// the choice of runtime.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { backendInfo, initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { randomModel } from '../engine/model/init';
import { nanoConfig } from '../engine/model/presets';
import type { MobileLLM } from '../engine/model/model';
import { ONNX_OPS } from '../engine/onnx/mobilellm';
import type { OnnxModelSession } from '../engine/onnx/session';
import { TfjsRuntime } from '../engine/runtime/tfjs';
import { openRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { goldenDir, maxAbsDiff } from './helpers/golden';
import { createRuntime, onnxRuntime, onnxSession } from './helpers/model-runtime';

beforeAll(async () => {
  await initBackend();
});

const SEQ = [1, 17, 33, 250, 7, 99, 401, 12, 5, 64, 300];

async function session(model: MobileLLM, ops: (typeof ONNX_OPS)[number]): Promise<OnnxModelSession> {
  return onnxSession(model, { ops });
}

describe.each(ONNX_OPS)('%s operators', (ops) => {
  it('incremental decoding with the cache equals the full forward, in chunks of any size; truncate rewinds', async () => {
    const { model } = loadModel(goldenDir('tiny-ls-reverse'));
    const s = await session(model, ops);
    model.dispose();
    const V = s.signature.vocabSize;
    const full = await s.forward(SEQ, s.newCache(), SEQ.length);
    const cache = s.newCache();
    const parts: number[] = [];
    for (const [a, b] of [
      [0, 4],
      [4, 5],
      [5, 9],
      [9, 11],
    ])
      parts.push(...(await s.forward(SEQ.slice(a, b), cache, b - a)));
    expect(cache.length).toBe(SEQ.length);
    expect(maxAbsDiff(Float32Array.from(parts), full)).toBeLessThan(1e-4);
    cache.truncate(5);
    expect(cache.length).toBe(5);
    const redo = await s.forward(SEQ.slice(5), cache, 6);
    expect(maxAbsDiff(redo, full.subarray(5 * V))).toBeLessThan(1e-4);
    await s.dispose();
  });

  it('decodes past the first cache allocation (256 tokens) as the full forward does', async () => {
    const model = randomModel(nanoConfig({ vocabSize: 512, maxPositions: 1024, numBlocks: 2 }), 3);
    const s = await session(model, ops);
    model.dispose();
    const ids = Array.from({ length: 300 }, (_, i) => (i * 37 + 11) % 512);
    const full = await s.forward(ids, s.newCache(), 40); // the last 40 positions
    const cache = s.newCache();
    await s.forward(ids.slice(0, 250), cache, 1);
    const steps: number[] = [];
    for (let t = 250; t < 300; t++) {
      const row = await s.forward([ids[t]], cache, 1);
      if (t >= 260) steps.push(...row);
    }
    expect(maxAbsDiff(Float32Array.from(steps), full)).toBeLessThan(1e-4);
    await s.dispose();
  });

  it('refuses a sequence longer than the context', async () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const s = await session(model, ops);
    model.dispose();
    const cache = s.newCache();
    await s.forward(Array(200).fill(5), cache, 1);
    await expect(s.forward(Array(57).fill(5), cache, 1)).rejects.toThrow(/257 tokens exceeds the model's 256-token context/);
    await s.dispose();
  });
});

it('the contrib graph agrees with the plain graph (1e-5) on a model whose head_dim GroupQueryAttention takes', async () => {
  const model = randomModel(nanoConfig({ vocabSize: 1000, sharing: { strategy: 'repeat_all', repeats: 2 }, numBlocks: 3 }), 7);
  const [contrib, plain] = await Promise.all(ONNX_OPS.map((ops) => session(model, ops)));
  model.dispose();
  expect(contrib.signature.fusedAttention).toBe(true);
  expect(plain.signature.fusedAttention).toBe(false);
  const ids = Array.from({ length: 48 }, (_, i) => (i * 101 + 3) % 1000);
  const [a, b] = await Promise.all([contrib, plain].map((s) => s.forward(ids, s.newCache(), ids.length)));
  expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  await Promise.all([contrib.dispose(), plain.dispose()]);
});

it('the contrib graph falls back to plain attention when head_dim is not a multiple of 16', async () => {
  const c = nanoConfig({ vocabSize: 300, hiddenSize: 96, numHeads: 4, numKvHeads: 2, headDim: 24, numBlocks: 2 });
  const model = randomModel(c, 5);
  const [contrib, plain] = await Promise.all(ONNX_OPS.map((ops) => session(model, ops)));
  model.dispose();
  expect(contrib.signature.fusedAttention).toBe(false);
  const ids = [1, 2, 3, 50, 60, 70, 299];
  const [a, b] = await Promise.all([contrib, plain].map((s) => s.forward(ids, s.newCache(), ids.length)));
  expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  await Promise.all([contrib.dispose(), plain.dispose()]);
});

it('a session without prepacked weights computes what the default one does (1e-5), shared blocks included', async () => {
  const model = randomModel(nanoConfig({ vocabSize: 1000, sharing: { strategy: 'immediate', repeats: 2 }, numBlocks: 2 }), 11);
  const [packed, unpacked] = await Promise.all([session(model, 'contrib'), onnxSession(model, { ops: 'contrib', prepack: false })]);
  model.dispose();
  const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 1000);
  const [a, b] = await Promise.all([packed, unpacked].map((s) => s.forward(ids, s.newCache(), ids.length)));
  expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  await Promise.all([packed.dispose(), unpacked.dispose()]);
});

it('scores like TensorFlow.js (1e-4)', async () => {
  const onnx = await onnxRuntime(loadModel(goldenDir('tiny-realvocab')).model);
  const tfjs = new TfjsRuntime(loadModel(goldenDir('tiny-realvocab')).model);
  const ids = [1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889];
  const [a, b] = await Promise.all([onnx.score(ids), tfjs.score(ids)]);
  expect(a.logprobs.length).toBe(ids.length - 1);
  expect(maxAbsDiff(a.logprobs, b.logprobs)).toBeLessThan(1e-4);
  expect(Math.abs(a.nll - b.nll)).toBeLessThan(1e-3);
  await expect(onnx.score([1])).rejects.toThrow(/at least 2 tokens/);
  await expect(onnx.nextLogits([1], tfjs.newCache())).rejects.toThrow(/another runtime/);
  await Promise.all([onnx.dispose(), tfjs.dispose()]);
});

describe('choice of runtime', () => {
  afterEach(() => {
    delete process.env.MLW_RUNTIME;
  });

  it('is onnx by default, tfjs when asked (by option or MLW_RUNTIME), and says so', async () => {
    const auto = await createRuntime(loadModel(goldenDir('tiny-gqa')).model);
    expect(auto.runtime.name).toBe('onnx');
    expect(auto.skipped).toEqual([]);
    expect(auto.runtime.describe()).toMatch(/^onnx \(onnxruntime-node \d+\.\d+\.\d+, cpu, \d+ threads?, contrib ops\)$/);
    const forced = await createRuntime(loadModel(goldenDir('tiny-gqa')).model, { runtime: 'tfjs' });
    expect(forced.runtime.name).toBe('tfjs');
    expect(forced.runtime.describe()).toMatch(/^tfjs \(/);
    process.env.MLW_RUNTIME = 'tfjs';
    const env = await createRuntime(loadModel(goldenDir('tiny-gqa')).model);
    expect(env.runtime.name).toBe('tfjs');
    process.env.MLW_RUNTIME = 'tensorrt';
    await expect(createRuntime(loadModel(goldenDir('tiny-gqa')).model)).rejects.toThrow(/MLW_RUNTIME: unknown runtime "tensorrt"/);
    await Promise.all([auto, forced, env].map((c) => c.runtime.dispose()));
  });

  it('opens a folder: onnx stages the weights on the cpu backend and restores the backend; tfjs keeps it', async () => {
    const before = backendInfo().name;
    const onnx = await openRuntime(readModelFolder(goldenDir('tiny-gqa')));
    expect(onnx.runtime.name).toBe('onnx');
    expect(backendInfo().name).toBe(before);
    const tfjs = await openRuntime(readModelFolder(goldenDir('tiny-gqa')), { runtime: 'tfjs' });
    expect(tf.getBackend()).toBe(before);
    const ids = [1, 5, 9, 33, 7];
    const [a, b] = await Promise.all([onnx.runtime.score(ids), tfjs.runtime.score(ids)]);
    expect(maxAbsDiff(a.logprobs, b.logprobs)).toBeLessThan(1e-4);
    await Promise.all([onnx.runtime.dispose(), tfjs.runtime.dispose()]);
  });

  it('hands the model over: the onnx runtime disposes the tfjs weights once it holds its own', async () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const { runtime } = await createRuntime(model, { runtime: 'onnx' });
    expect(model.weights.embed.wT.isDisposed).toBe(true);
    await runtime.dispose();
  });
});
