// Quantized MobileLLMs: W8A8 on the golden models stays close to the float
// logits, a layer-shared model still shares, save → load gives identical
// logits, bad input gets a one-line error, and malformed quantized folders
// are refused naming the file and tensor.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel, openWeights, readConfig, saveModel } from '../engine/io/checkpoint';
import { readModelFolder } from '../engine/folder/kind';
import { checkTensors, loadModelFolder, type LoadedFolder } from '../engine/folder/load';
import { readSafetensors, writeSafetensors } from '../engine/io/safetensors';
import { nanoConfig } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { blockLinear, type MobileLLM } from '../engine/model/model';
import type { KVCache } from '../engine/model/kv-cache';
import { CancelledError, quietContext, type JobProgress } from '../engine/jobs/job';
import { loadQuantizedModel, readQuantization, saveQuantizedModel } from '../engine/quant/checkpoint';
import { quantizeModel, weightMemory, type QuantizedModel } from '../engine/quant/quantize';
import { QuantizedEmbedding, QuantizedLinear } from '../engine/quant/quantized-linear';
import { resolveSpec, type QuantSpec } from '../engine/quant/spec';
import { GOLDEN_CASES, goldenDir, goldenTensors, maxAbsDiff } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

/** Any model folder, as the commands load it (engine/folder). */
const loadFolder = (dir: string): LoadedFolder => loadModelFolder(readModelFolder(dir));

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-quant-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function goldenIds(name: (typeof GOLDEN_CASES)[number]): tf.Tensor2D {
  const { values, shape } = goldenTensors(name).ids();
  return tf.tensor2d(values, shape as [number, number], 'int32');
}

function logits(model: MobileLLM, ids: tf.Tensor2D, cache?: KVCache): Float32Array {
  const out = model.forward(ids, { cache });
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return v;
}

const quantize = (model: MobileLLM, opts: { method: string; groupSize?: number; keepEmbeddingFp?: boolean }, cacheBytes = 0) =>
  quantizeModel(model, resolveSpec(model.config, opts), quietContext(), { cacheBytes });

/** How far apart two sets of logits [.., V] are: max |Δ|, RMS(Δ)/RMS(float), mean KL(float ‖ quantized) per position. */
function closeness(ref: Float32Array, got: Float32Array, V: number) {
  let noise = 0;
  let signal = 0;
  let kl = 0;
  const rows = ref.length / V;
  for (let r = 0; r < rows; r++) {
    const a = ref.subarray(r * V, (r + 1) * V);
    const b = got.subarray(r * V, (r + 1) * V);
    const lse = (x: Float32Array) => {
      const m = Math.max(...x);
      return m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
    };
    const la = lse(a);
    const lb = lse(b);
    for (let v = 0; v < V; v++) {
      noise += (a[v] - b[v]) ** 2;
      signal += a[v] ** 2;
      kl += Math.exp(a[v] - la) * (a[v] - la - (b[v] - lb));
    }
  }
  return { maxAbs: maxAbsDiff(ref, got), relRms: Math.sqrt(noise / signal), kl: kl / rows };
}

/** A random nano model whose widths (128, 384) fit every int4 group size. */
function nanoModel(overrides: Parameters<typeof nanoConfig>[0] = {}): MobileLLM {
  return randomModel(nanoConfig({ vocabSize: 512, numBlocks: 2, intermediateSize: 384, maxPositions: 128, ...overrides }), 3);
}

describe.each(TEST_BACKENDS)('on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  // Measured (cpu and wasm, all nine cases): max |Δlogit| ≤ 0.56 on logits up to ±4.9, RMS(Δ)/RMS ≤ 0.071,
  // mean KL ≤ 2.7e-3 nats. Why that large: the golden weights are random with sharp attention
  // (q/k ~ N(0, 2.25/hidden)) and only 64-wide channels, so small weight errors are amplified — casting the
  // same model to bfloat16 (≈59 dB weight SQNR) already moves its logits by 0.08; per-channel int8 over
  // 64 inputs is ≈44 dB, ≈6× the bf16 error, plus 8-bit activations at every linear. Tolerances below are
  // the measurement with ~35 % headroom; a w4 model breaks them (max |Δ| > 1).
  describe.each(GOLDEN_CASES)('W8A8 on golden %s', (name) => {
    it('keeps the logits close (max |Δ| < 0.75, relative RMS < 0.1, KL < 4e-3)', async () => {
      const { model } = loadModel(goldenDir(name));
      const ids = goldenIds(name);
      const ref = logits(model, ids);
      const q = await quantize(model, { method: 'w8a8' });
      const c = closeness(ref, logits(q.model, ids), model.config.vocabSize);
      expect(c.maxAbs).toBeLessThan(0.75);
      expect(c.relRms).toBeLessThan(0.1);
      expect(c.kl).toBeLessThan(4e-3);
      expect(c.maxAbs).toBeGreaterThan(0); // it did quantize
      tf.dispose(ids);
      model.dispose();
      q.model.dispose();
    });
  });

  it('a layer-shared model still shares: one physical block quantized once, schedule unchanged, saved once', async () => {
    const { model } = loadModel(goldenDir('tiny-ls-immediate'));
    const events: JobProgress[] = [];
    const q = await quantizeModel(model, resolveSpec(model.config, { method: 'w8a8' }), {
      signal: new AbortController().signal,
      progress: (p) => events.push(p),
    });
    expect(q.model.schedule).toEqual([0, 0, 1, 1, 2, 2]);
    expect(q.model.weights.blocks).toHaveLength(3);
    // 3 blocks × 7 linears + the shared embedding, each once
    const quantized = events.filter((e) => e.phase?.startsWith('quantizing'));
    expect(quantized.map((e) => e.done)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    expect(new Set(quantized.map((e) => e.phase)).size).toBe(22);
    expect(q.model.weights.head).toBe(q.model.weights.embed);
    const out = path.join(tmp, `ls-${backend}`);
    await saveQuantizedModel(q, out);
    const names = [...readSafetensors(path.join(out, 'model.safetensors')).tensors.keys()];
    expect(names.filter((n) => n.endsWith('.qweight'))).toHaveLength(22);
    expect(new Set(names.map((n) => n.match(/^model\.layers\.(\d+)\./)?.[1]).filter(Boolean))).toEqual(new Set(['0', '1', '2']));
    const loaded = loadFolder(out).model;
    expect(loaded.schedule).toEqual([0, 0, 1, 1, 2, 2]);
    const ids = goldenIds('tiny-ls-immediate');
    expect(maxAbsDiff(logits(loaded, ids), logits(q.model, ids))).toBe(0);
    tf.dispose(ids);
    for (const m of [model, q.model, loaded]) m.dispose();
  });

  describe('save → load gives identical logits', () => {
    const cases: [string, () => MobileLLM, { method: string; groupSize?: number; keepEmbeddingFp?: boolean }][] = [
      ['tiny-gqa w8a8', () => loadModel(goldenDir('tiny-gqa')).model, { method: 'w8a8' }],
      ['tiny-gqa w8 (embedding kept)', () => loadModel(goldenDir('tiny-gqa')).model, { method: 'w8', keepEmbeddingFp: true }],
      ['tiny-untied-mha w8a8 (untied head quantized)', () => loadModel(goldenDir('tiny-untied-mha')).model, { method: 'w8a8' }],
      ['tiny-untied-mha w8 (embedding and head kept)', () => loadModel(goldenDir('tiny-untied-mha')).model, { method: 'w8', keepEmbeddingFp: true }],
      ['nano w4 g32', () => nanoModel(), { method: 'w4', groupSize: 32 }],
      ['nano w4 g128, embedding kept', () => nanoModel(), { method: 'w4', groupSize: 128, keepEmbeddingFp: true }],
      [
        'nano layer-shared (reverse) untied w4 g64',
        () => nanoModel({ shareEmbedding: false, sharing: { strategy: 'reverse', repeats: 2 } }),
        { method: 'w4', groupSize: 64 },
      ],
    ];
    it.each(cases)('%s', async (label, make, opts) => {
      const before = tf.memory().numTensors;
      const model = make();
      const ids = tf.tensor2d([[1, 5, 9, 200, 33, 7, 100, 2]], [1, 8], 'int32');
      const q = await quantize(model, opts);
      const out = path.join(tmp, `rt-${backend}-${label.replace(/\W+/g, '-')}`);
      await saveQuantizedModel(q, out);
      const loaded = loadFolder(out);
      expect(loaded.storedDtype).toBe(opts.method === 'w4' ? 'U8' : 'I8');
      expect(readQuantization(out)).toEqual(q.spec);
      const a = logits(q.model, ids);
      expect(Array.from(logits(loaded.model, ids))).toEqual(Array.from(a));
      // with and without dequantized weights cached: identical again
      const cached = loadQuantizedModel(out, { cacheBytes: Infinity }).model;
      const lean = loadQuantizedModel(out, { cacheBytes: 0 }).model;
      expect(Array.from(logits(cached, ids))).toEqual(Array.from(a));
      expect(Array.from(logits(lean, ids))).toEqual(Array.from(a));
      expect(weightMemory(cached).cacheBytes).toBeGreaterThan(0);
      expect(weightMemory(lean).cacheBytes).toBe(0);
      // decoding (one row, multiplied from the codes) after an 8-token prefill in the KV cache
      const step = (m: MobileLLM) => {
        const cache = m.newCache();
        m.forward(ids, { cache }).dispose();
        const next = tf.tensor2d([[42]], [1, 1], 'int32');
        const v = logits(m, next, cache);
        tf.dispose(next);
        cache.dispose();
        return Array.from(v);
      };
      const decoded = step(q.model);
      expect(step(loaded.model)).toEqual(decoded);
      // the one-row product from the codes agrees with the full forward through float weights
      const all = tf.tensor2d([[1, 5, 9, 200, 33, 7, 100, 2, 42]], [1, 9], 'int32');
      const full = logits(q.model, all).slice(8 * model.config.vocabSize);
      expect(maxAbsDiff(decoded, full)).toBeLessThan(1e-4);
      tf.dispose(all);
      tf.dispose(ids);
      for (const m of [model, q.model, loaded.model, cached, lean]) m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  });
});

describe('memory held by a quantized model', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('holds int8 codes at ~1/4 and int4 at ~1/7 of float32, and only codes when the cache is empty', async () => {
    const model = nanoModel();
    const float = weightMemory(model);
    expect(float.codeBytes).toBe(0);
    const w8 = await quantize(model, { method: 'w8' });
    const w4 = await quantize(model, { method: 'w4', groupSize: 128 });
    const m8 = weightMemory(w8.model);
    const m4 = weightMemory(w4.model);
    expect(m8.codeBytes / float.total).toBeGreaterThan(0.25);
    expect(m8.total / float.total).toBeLessThan(0.26);
    expect(m4.total / float.total).toBeLessThan(0.14);
    expect(m4.floatBytes).toBe(m8.floatBytes); // only the norms stay float
    // With a cache that holds everything, a forward pass adds the float32 weights back.
    const full = await quantize(model, { method: 'w8' }, Infinity);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], 'int32');
    full.model.forward(ids).dispose();
    tf.dispose(ids);
    expect(weightMemory(full.model).cacheBytes).toBe(float.total - m8.floatBytes);
    for (const m of [model, w8.model, w4.model, full.model]) m.dispose();
  });
});

describe('bad input gets a one-line error', () => {
  let model: MobileLLM;
  let quantized: QuantizedModel;
  beforeAll(async () => {
    await initBackend('cpu');
    model = loadModel(goldenDir('tiny-gqa')).model;
    quantized = await quantize(model, { method: 'w8' });
  });
  afterAll(() => {
    model.dispose();
    quantized.model.dispose();
  });

  const oneLine = (fn: () => unknown, message: string | RegExp) => {
    let err: Error | undefined;
    try {
      fn();
    } catch (e) {
      err = e as Error;
    }
    expect(err, 'expected an error').toBeDefined();
    expect(err!.message).toMatch(message);
    expect(err!.message).not.toContain('\n');
  };

  it('an unknown method, a group size that does not divide a width, or one that does not apply', () => {
    const c = model.config;
    oneLine(() => resolveSpec(c, { method: 'w3' }), 'unknown quantization method "w3" (expected w8a8, w8, w4)');
    oneLine(() => resolveSpec(c, { method: 'w4', groupSize: 64 }), 'group size 64 does not divide the input width 176 of mlp.down_proj');
    oneLine(() => resolveSpec(c, { method: 'w4' }), 'no group size of 32, 64, 128 divides the input width 176 of mlp.down_proj');
    oneLine(() => resolveSpec(c, { method: 'w4', groupSize: 16 }), 'group size 16 is not supported (expected 32, 64, 128)');
    oneLine(() => resolveSpec(c, { method: 'w8', groupSize: 64 }), 'group size applies to w4 only');
    const nano = nanoConfig({ hiddenSize: 576, intermediateSize: 1536, numHeads: 9, numKvHeads: 3, headDim: 64 }); // 125M's widths
    expect(resolveSpec(nano, { method: 'w4' }).groupSize).toBe(64);
  });

  it('an already quantized model', async () => {
    await expect(quantizeModel(quantized.model, quantized.spec, quietContext())).rejects.toThrow(
      'the model is already quantized (model.embed_tokens); quantize the original float model',
    );
    const keep = await quantize(model, { method: 'w8', keepEmbeddingFp: true });
    await expect(quantizeModel(keep.model, keep.spec, quietContext())).rejects.toThrow('already quantized (model.layers.0.self_attn.q_proj)');
    keep.model.dispose();
  });

  it('a cancelled job stops and frees what it made', async () => {
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const ctx = { signal: controller.signal, progress: (p: JobProgress) => p.done === 3 && controller.abort() };
    await expect(quantizeModel(model, quantized.spec, ctx)).rejects.toBeInstanceOf(CancelledError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a quantized model has no float weights to train or export', () => {
    expect(() => quantized.model.namedParams()).toThrow('model.embed_tokens is quantized: it has no float weight');
    expect(quantized.model.weights.embed).toBeInstanceOf(QuantizedEmbedding);
    expect(blockLinear(quantized.model.weights.blocks[0], 'q')).toBeInstanceOf(QuantizedLinear);
  });
});

describe('quantized folders: checked names, shapes, dtypes and config block', () => {
  let good: string;
  let spec: QuantSpec;
  beforeAll(async () => {
    await initBackend('cpu');
    const model = nanoModel();
    const q = await quantize(model, { method: 'w4', groupSize: 64 });
    spec = q.spec;
    good = path.join(tmp, 'good-w4');
    await saveQuantizedModel(q, good);
    model.dispose();
    q.model.dispose();
  });

  it('passes checkTensors (as `mlw info` and model import call it)', () => {
    const { source } = openWeights(good);
    expect(() => checkTensors(source, readConfig(good))).not.toThrow();
    source.close();
    expect(readQuantization(good)).toEqual(spec);
  });

  it('writes a documented quantization block', () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(good, 'config.json'), 'utf8'));
    expect(cfg.quantization).toEqual({
      format_version: 1,
      method: 'w4',
      bits: 4,
      symmetric: false,
      group_size: 64,
      channel_axis: 0,
      activations: null,
      quantized_modules: [
        'self_attn.q_proj',
        'self_attn.k_proj',
        'self_attn.v_proj',
        'self_attn.o_proj',
        'mlp.gate_proj',
        'mlp.up_proj',
        'mlp.down_proj',
        'embed_tokens',
      ],
      unquantized_dtype: 'float16',
    });
    const st = readSafetensors(path.join(good, 'model.safetensors')).tensors;
    const q = st.get('model.layers.0.mlp.down_proj.qweight')!;
    expect([q.dtype, q.shape]).toEqual(['U8', [128, 192]]);
    expect(st.get('model.layers.0.mlp.down_proj.scales')!.shape).toEqual([128, 6]);
    expect(st.get('model.layers.0.mlp.down_proj.zeros')!.dtype).toBe('U8');
  });

  /** A copy of the good folder with its tensors or config edited. */
  function variant(
    name: string,
    edit: { tensors?: (t: ReturnType<typeof readSafetensors>['tensors']) => void; config?: (c: Record<string, unknown>) => void },
  ): string {
    const dir = path.join(tmp, name);
    fs.cpSync(good, dir, { recursive: true });
    if (edit.tensors) {
      const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
      edit.tensors(tensors);
      writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    }
    if (edit.config) {
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      edit.config(cfg);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    }
    return dir;
  }

  const Q = 'model.layers.1.self_attn.q_proj';
  const table: { name: string; edit: Parameters<typeof variant>[1]; error: RegExp }[] = [
    {
      name: 'missing-scales',
      edit: { tensors: (t) => t.delete(`${Q}.scales`) },
      error: /model\.safetensors: missing tensor "model\.layers\.1\.self_attn\.q_proj\.scales"/,
    },
    {
      name: 'wrong-dtype',
      edit: { tensors: (t) => t.set(`${Q}.zeros`, { ...t.get(`${Q}.zeros`)!, dtype: 'I8' }) },
      error: /tensor "model\.layers\.1\.self_attn\.q_proj\.zeros" has dtype I8, expected U8/,
    },
    {
      name: 'wrong-shape',
      edit: { tensors: (t) => t.set(`${Q}.scales`, { dtype: 'F32', shape: [128, 4], data: new Uint8Array(128 * 4 * 4) }) },
      error: /tensor "model\.layers\.1\.self_attn\.q_proj\.scales" has shape \[128,4\], expected \[128,2\]/,
    },
    {
      name: 'float-leftover',
      edit: { tensors: (t) => t.set(`${Q}.weight`, { dtype: 'F32', shape: [128, 128], data: new Uint8Array(128 * 128 * 4) }) },
      error: /unexpected tensor "model\.layers\.1\.self_attn\.q_proj\.weight" \(not part of this w4 model\)/,
    },
    {
      name: 'zero-point-out-of-range',
      edit: { tensors: (t) => t.get(`${Q}.zeros`)!.data.fill(16, 0, 1) },
      error: /tensor "model\.layers\.1\.self_attn\.q_proj\.zeros" holds 16 at index 0; int4 zero points are 0…15/,
    },
    { name: 'bad-bits', edit: { config: (c) => ((c.quantization as Record<string, unknown>).bits = 3) }, error: /config\.json: invalid "quantization\.bits"/ },
    {
      name: 'bad-method',
      edit: { config: (c) => ((c.quantization as Record<string, unknown>).method = 'w2') },
      error: /config\.json: invalid "quantization\.method"/,
    },
    {
      name: 'group-mismatch',
      edit: { config: (c) => ((c.quantization as Record<string, unknown>).group_size = 32) },
      error: /tensor "model\.embed_tokens\.scales" has shape \[512,2\], expected \[512,4\]/,
    },
    {
      name: 'modules-mismatch',
      edit: { config: (c) => (c.quantization as { quantized_modules: string[] }).quantized_modules.push('lm_head') },
      error: /quantization\.quantized_modules .* do not match this model/,
    },
    { name: 'no-block', edit: { config: (c) => delete c.quantization }, error: /holds quantized tensors but .*config\.json has no "quantization" block/ },
  ];

  it.each(table)('$name', ({ name, edit, error }) => {
    const dir = variant(name, edit);
    let err: Error | undefined;
    try {
      loadFolder(dir).model.dispose();
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(error);
    expect(err?.message).not.toContain('\n');
  });

  it('refuses to load quantized weights for training', () => {
    expect(() => loadModelFolder(readModelFolder(good), { wrap: (t) => tf.variable(t) })).toThrow(
      'quantized weights cannot be trained; load the float model it was made from',
    );
  });

  it('still loads float folders and saves them as before', async () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const out = path.join(tmp, 'float-again');
    await saveModel(model, out);
    expect(readQuantization(out)).toBeNull();
    loadModel(out).model.dispose();
    model.dispose();
  });
});
