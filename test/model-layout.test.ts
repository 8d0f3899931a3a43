// The parameter layout (engine/model/layout.ts) is the one source of a
// MobileLLM's tensor names and shapes: the golden checkpoints hold exactly
// the tensors it lists, and a hypothetical extra norm added to a copy of the
// layout is picked up by load, save, quantize, the quantized checkpoint, the
// ONNX graph and the inspector without another edit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel, openWeights, saveModel } from '../engine/io/checkpoint';
import { readSafetensors } from '../engine/io/safetensors';
import { configFromHf } from '../engine/model/config';
import { randomModel } from '../engine/model/init';
import { MOBILELLM_LAYOUT, tensorSpecs, type Layout } from '../engine/model/layout';
import { normOf, type MobileLLM } from '../engine/model/model';
import { nanoConfig } from '../engine/model/presets';
import { quietContext } from '../engine/jobs/job';
import { loadQuantizedModel, saveQuantizedModel } from '../engine/quant/checkpoint';
import { quantizeModel } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import { exportMobileLLM } from '../engine/onnx/mobilellm';
import { weightAnalysis } from '../engine/inspect/analysis';
import { GOLDEN_CASES, goldenDir } from './helpers/golden';

const EXTRA = 'extra_layernorm.weight';
/** MobileLLM's layout with one more norm gain per block, after the MLP's. */
const EXTRA_LAYOUT: Layout = {
  ...MOBILELLM_LAYOUT,
  block: [...MOBILELLM_LAYOUT.block, { kind: 'norm', key: 'extra', name: EXTRA, shape: (c) => [c.hiddenSize] }],
};

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-layout-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the layout', () => {
  it.each(GOLDEN_CASES)('lists exactly the tensors transformers saved for %s, with their shapes', (name) => {
    const dir = goldenDir(name);
    const config = configFromHf(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')));
    const { source } = openWeights(dir);
    try {
      const saved = new Map(source.names().map((n) => [n, source.info(n).shape]));
      if (config.shareEmbedding) saved.delete('lm_head.weight'); // a tied head saved twice is the embedding
      const specs = tensorSpecs(config);
      expect(new Map(specs.map((s) => [s.name, s.shape]))).toEqual(saved);
      // a shared block is read by every layer its schedule gives it, and every layer reads one block
      const layers = specs.filter((s) => s.kind === 'linear' && s.key === 'q').flatMap((s) => s.layers);
      expect(layers.sort((a, b) => a - b)).toEqual([...Array(layers.length).keys()]);
    } finally {
      source.close();
    }
  });
});

describe('an extra norm added to a copy of the layout', () => {
  const config = { ...nanoConfig(), numBlocks: 2, sharing: { strategy: 'immediate' as const, repeats: 2 } };
  let model: MobileLLM;
  const extraOf = (m: MobileLLM, block: number) =>
    normOf(
      m.weights,
      m.specs().find((s) => s.name === `model.layers.${block}.${EXTRA}`)!,
    );
  beforeAll(() => {
    model = randomModel(config, 3, (t) => tf.variable(t), EXTRA_LAYOUT);
    // distinct values per block, so a round trip that mixed them up would show
    for (let b = 0; b < config.numBlocks; b++) (extraOf(model, b) as tf.Variable).assign(tf.fill([config.hiddenSize], b + 2));
  });
  afterAll(() => model.dispose());

  it('is built, saved and loaded', async () => {
    expect(model.weights.blocks[1].norms).toHaveProperty('extra');
    const dir = path.join(tmp, 'float');
    await saveModel(model, dir);
    const names = [...readSafetensors(path.join(dir, 'model.safetensors')).tensors.keys()];
    expect(names).toContain(`model.layers.0.${EXTRA}`);
    expect(names).toContain(`model.layers.1.${EXTRA}`);
    // MobileLLM's own layout does not know the tensor: the check names it
    expect(() => loadModel(dir)).toThrow(`unexpected tensor "model.layers.0.${EXTRA}"`);
    const { model: back } = loadModel(dir, { layout: EXTRA_LAYOUT });
    try {
      for (let b = 0; b < config.numBlocks; b++) expect([...extraOf(back, b).dataSync()]).toEqual([...extraOf(model, b).dataSync()]);
    } finally {
      back.dispose();
    }
  });

  it('is kept in float by quantization and stored in the quantized checkpoint', async () => {
    const q = await quantizeModel(model, resolveSpec(config, { method: 'w8a8' }), quietContext(), { cacheBytes: 0 });
    const dir = path.join(tmp, 'w8a8');
    try {
      expect([...extraOf(q.model, 1).dataSync()]).toEqual([...extraOf(model, 1).dataSync()]);
      await saveQuantizedModel(q, dir);
      expect([...readSafetensors(path.join(dir, 'model.safetensors')).tensors.keys()]).toContain(`model.layers.1.${EXTRA}`);
    } finally {
      q.model.dispose();
    }
    expect(() => loadQuantizedModel(dir)).toThrow(`unexpected tensor "model.layers.0.${EXTRA}"`);
    const back = loadQuantizedModel(dir, { layout: EXTRA_LAYOUT });
    try {
      expect([...extraOf(back.model, 0).dataSync()]).toEqual([...extraOf(model, 0).dataSync()]);
    } finally {
      back.model.dispose();
    }
  });

  it('becomes an initializer of the ONNX graph and a row of the inspector', () => {
    const graph = exportMobileLLM(model);
    const proto = Buffer.from(graph.model);
    for (let b = 0; b < config.numBlocks; b++) expect(proto.includes(`model.layers.${b}.${EXTRA}`)).toBe(true);
    const analysis = weightAnalysis(model);
    expect(analysis.blocks[0].tensors.map((t) => t.name)).toContain(EXTRA);
    expect(analysis.blocks[0].layers).toEqual([0, 1]);
  });
});

describe('random initialization', () => {
  it.each([0, 1])('draws the same weights twice for seed %i, and other weights for another seed', async (seed) => {
    await initBackend();
    const values = (s: number) => {
      const m = randomModel(nanoConfig(), s);
      const out = [...m.namedParams()].map(([name, p]) => [name, Array.from(p.tensor.dataSync())] as const);
      m.dispose();
      return new Map(out);
    };
    const [a, b, other] = [values(seed), values(seed), values(seed + 7)];
    expect(a).toEqual(b);
    expect(a.get('model.embed_tokens.weight')).not.toEqual(other.get('model.embed_tokens.weight'));
  });
});
