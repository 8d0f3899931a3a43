// LoRA: exact trainable-parameter counts, a fresh adapter leaves the model
// unchanged, layer-shared blocks get the sum of their uses' gradients, the PEFT
// file layout, load = save, merge = adapter, dropout masks, bad configs.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { readSafetensors } from '../engine/io/safetensors';
import { MobileLLM } from '../engine/model/model';
import type { LinearKey } from '../engine/model/layout';
import { NO_SHARING } from '../engine/model/sharing';
import { preset } from '../engine/model/presets';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoraDropout,
  applyLora,
  loadAdapter,
  mergeLoraFolder,
  readAdapterConfig,
  writeAdapterFiles,
  type LoraAdapters,
} from '../engine/train/lora';
import { LoraSettings } from '../engine/train/config';
import { lossAndGrads } from '../engine/train/backprop';
import { disposeMicroBatch, microBatch } from '../engine/train/batching';
import { trainableParams } from '../engine/train/estimate';
import { goldenDir, maxAbsDiff, type GoldenCase } from './helpers/golden';
import { randomSequences } from './helpers/train-run';
import { tempDir, tinyModelDir } from './helpers/train-fixtures';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('lora');
beforeAll(async () => {
  await initBackend();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const variable = (t: tf.Tensor2D) => tf.variable(t) as unknown as tf.Tensor2D;
const IDS = [
  [1, 17, 33, 250, 7, 99, 401, 12, 5, 64, 300, 2],
  [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45],
];

function logits(model: MobileLLM): Float32Array {
  return tf.tidy(() => model.forward(tf.tensor2d(IDS, [2, 12], 'int32')).dataSync() as Float32Array);
}

/** Gives every B a random value (a fresh adapter has B = 0 and changes nothing). */
function randomizeB(adapters: LoraAdapters, seed: number): void {
  let i = 0;
  for (const [name, t] of adapters.params()) {
    if (name.endsWith('lora_B.weight')) (t as tf.Variable).assign(tf.randomNormal(t.shape, 0, 0.05, 'float32', seed + i++));
  }
}

describe('parameter counts (exact)', () => {
  it.each([
    ['tiny-gqa', 8, ['q', 'v'], 4 * (8 * (64 + 64) + 8 * (64 + 32))],
    ['tiny-gqa', 4, ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], 4 * 4 * (64 + 64 + 64 + 32 + 64 + 32 + 64 + 64 + 3 * (64 + 176))],
    ['tiny-ls-immediate', 8, ['q', 'v'], 3 * (8 * (64 + 64) + 8 * (64 + 16))], // 3 physical blocks, 6 layers: one adapter per block
    ['tiny-untied-mha', 2, ['down'], 3 * 2 * (128 + 48)],
  ] as [GoldenCase, number, LinearKey[], number][])('%s rank %d on %j: %d', (name, rank, targets, count) => {
    const { model } = loadModel(goldenDir(name));
    const adapters = applyLora(model, LoraSettings.parse({ rank, alpha: 16, dropout: 0, targets }), { seed: 0 });
    expect(adapters.count()).toBe(count);
    expect(trainableParams(model.config, { method: 'lora', loraRank: rank, loraTargets: targets, batchSize: 1, seqLen: 1 })).toBe(count);
    adapters.remove();
    model.dispose();
  });

  it('MobileLLM-125M with rank 8 on q,v trains 460,800 parameters', () => {
    expect(trainableParams(preset('125M'), { method: 'lora', loraRank: 8, loraTargets: ['q', 'v'], batchSize: 1, seqLen: 1 })).toBe(460_800);
  });
});

describe('adapters', () => {
  it('start from the base model exactly (B = 0), and are removed cleanly', () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const base = logits(model);
    const adapters = applyLora(
      model,
      LoraSettings.parse({ rank: 8, alpha: 16, dropout: 0.1, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }),
      { seed: 1 },
      variable,
    );
    expect(maxAbsDiff(logits(model), base)).toBe(0);
    randomizeB(adapters, 3);
    expect(maxAbsDiff(logits(model), base)).toBeGreaterThan(1e-3);
    adapters.remove();
    expect(maxAbsDiff(logits(model), base)).toBe(0);
    model.dispose();
  });

  it('a layer-shared block gets the sum of the gradients of its uses', () => {
    const { model } = loadModel(goldenDir('tiny-ls-repeat-all')); // blocks 0,1,2,0,1,2
    const shared = applyLora(model, LoraSettings.parse({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'down'] }), { seed: 2 }, variable);
    randomizeB(shared, 5);
    // The same network unrolled: one block (and one copy of the adapter) per effective layer.
    const w = model.weights;
    const unrolledWeights = { ...w, blocks: model.schedule.map((b) => ({ ...w.blocks[b], attn: { ...w.blocks[b].attn }, mlp: { ...w.blocks[b].mlp } })) };
    unrolledWeights.blocks.forEach((b, l) => {
      const src = w.blocks[model.schedule[l]];
      b.attn.q = (src.attn.q as unknown as { base: typeof b.attn.q }).base;
      b.mlp.down = (src.mlp.down as unknown as { base: typeof b.mlp.down }).base;
    });
    const unrolled = new MobileLLM({ ...model.config, numBlocks: model.numLayers, sharing: NO_SHARING }, unrolledWeights);
    const copies = new Map<string, tf.Tensor2D>();
    const sharedParams = shared.params();
    model.schedule.forEach((b, l) => {
      for (const [name, t] of sharedParams) if (name.includes(`.layers.${b}.`)) copies.set(name.replace(`.layers.${b}.`, `.layers.${l}.`), t);
    });
    const copy = applyLora(unrolled, shared.options, { weights: copies }, variable);
    expect(maxAbsDiff(logits(unrolled), logits(model))).toBeLessThan(1e-5);

    const batch = microBatch(randomSequences(2, 10, 512, 1), 18);
    const vars = (a: LoraAdapters) => new Map([...a.params()].map(([n, t]) => [n, t as tf.Variable]));
    const g = lossAndGrads(model, vars(shared), batch, 'tape');
    const gu = lossAndGrads(unrolled, vars(copy), batch, 'recompute');
    expect(Math.abs(g.loss - gu.loss)).toBeLessThan(1e-6);
    for (const [name, grad] of g.grads) {
      const b = Number(/\.layers\.(\d+)\./.exec(name)![1]);
      const uses = model.schedule.flatMap((s, l) => (s === b ? [gu.grads.get(name.replace(`.layers.${b}.`, `.layers.${l}.`))!] : []));
      expect(uses).toHaveLength(2);
      const sum = tf.addN(uses);
      expect(maxAbsDiff(grad.dataSync(), sum.dataSync()), name).toBeLessThan(1e-6);
      sum.dispose();
    }
    tf.dispose([...g.grads.values(), ...gu.grads.values()]);
    disposeMicroBatch(batch);
    copy.remove();
    shared.remove();
    model.dispose();
  });

  it('dropout masks depend only on the key and the site; no key, no dropout', () => {
    const d = new LoraDropout(0.5);
    const x = tf.ones([4, 8]) as tf.Tensor2D;
    expect(d.apply(x, 0)).toBe(x);
    d.key = 7;
    const a = d.apply(x, 0).dataSync();
    expect(Array.from(d.apply(x, 0).dataSync())).toEqual(Array.from(a));
    expect(Array.from(d.apply(x, 1).dataSync())).not.toEqual(Array.from(a));
    expect(new Set(a)).toEqual(new Set([0, 2])); // kept inputs are scaled by 1/(1 − p)
    d.key = 8;
    expect(Array.from(d.apply(x, 0).dataSync())).not.toEqual(Array.from(a));
  });
});

describe('PEFT files', () => {
  const base = goldenDir('tiny-ls-immediate');
  let dir: string;
  let expected: Float32Array;

  beforeAll(() => {
    const { model } = loadModel(base);
    const adapters = applyLora(model, LoraSettings.parse({ rank: 4, alpha: 32, dropout: 0.05, targets: ['q', 'v', 'up'] }), { seed: 4 }, variable);
    randomizeB(adapters, 9);
    expected = logits(model);
    dir = path.join(tmp, 'adapter');
    fs.mkdirSync(dir);
    writeAdapterFiles(adapters, dir, base);
    adapters.remove();
    model.dispose();
  });

  it('writes the keys, shapes and adapter_config.json Hugging Face PEFT loads', () => {
    const { tensors, metadata } = readSafetensors(path.join(dir, ADAPTER_WEIGHTS));
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.size).toBe(3 * 3 * 2);
    expect(tensors.get('base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight')!.shape).toEqual([4, 64]); // [r, in]
    expect(tensors.get('base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight')!.shape).toEqual([64, 4]); // [out, r]
    expect(tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape).toEqual([16, 4]);
    expect(tensors.get('base_model.model.model.layers.1.mlp.up_proj.lora_A.weight')!.shape).toEqual([4, 64]);
    expect(tensors.get('base_model.model.model.layers.1.mlp.up_proj.lora_B.weight')!.shape).toEqual([176, 4]);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 32,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj', 'up_proj'],
      base_model_name_or_path: path.basename(base), // a name another machine resolves (no Hub origin here)
      mlw_base_model_path: path.resolve(base), // where it is on this one
      bias: 'none',
      use_rslora: false,
    });
    expect(readAdapterConfig(dir).options).toEqual({ rank: 4, alpha: 32, dropout: 0.05, targets: ['q', 'v', 'up'], rslora: false });
  });

  it('loads back to the same logits', () => {
    const { model } = loadModel(base);
    const adapters = loadAdapter(model, dir);
    expect(maxAbsDiff(logits(model), expected)).toBe(0);
    adapters.remove();
    model.dispose();
  });

  it('merges into a plain model folder whose logits equal the adapter’s', async () => {
    const out = path.join(tmp, 'merged');
    await mergeLoraFolder(dir, out);
    const { model } = loadModel(out);
    expect(maxAbsDiff(logits(model), expected)).toBeLessThan(1e-5);
    model.dispose();
    const withTokenizer = tinyModelDir(tmp, 'tiny-ls-immediate');
    await mergeLoraFolder(dir, path.join(tmp, 'merged2'), withTokenizer);
    expect(fs.existsSync(path.join(tmp, 'merged2', 'tokenizer.json'))).toBe(true); // tokenizer files come along
  });

  it.each([
    [{ use_dora: true }, '"use_dora"'],
    [{ target_modules: 'all-linear' }, '"target_modules"'],
    [{ target_modules: ['q_proj', 'lm_head'] }, '"target_modules.1"'],
    [{ peft_type: 'IA3' }, '"peft_type"'],
    [{ rank_pattern: { 'layers.0': 16 } }, '"rank_pattern.layers.0"'],
  ])('refuses adapter_config.json with %j', (change, where) => {
    const bad = path.join(tmp, `bad-${Object.keys(change)[0]}`);
    fs.cpSync(dir, bad, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG), 'utf8'));
    fs.writeFileSync(path.join(bad, ADAPTER_CONFIG), JSON.stringify({ ...cfg, ...change }));
    expect(() => readAdapterConfig(bad)).toThrow(`${path.join(bad, ADAPTER_CONFIG)}: unsupported or invalid ${where}`);
  });

  it('refuses an adapter whose tensors do not match its config', () => {
    const bad = path.join(tmp, 'bad-rank');
    fs.cpSync(dir, bad, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG), 'utf8'));
    fs.writeFileSync(path.join(bad, ADAPTER_CONFIG), JSON.stringify({ ...cfg, r: 8 }));
    const { model } = loadModel(base);
    expect(() => loadAdapter(model, bad)).toThrow(/is \[4,64\], expected \[8,64\] for rank 8/);
    model.dispose();
  });
});
