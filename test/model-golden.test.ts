// The TensorFlow.js MobileLLM against Hugging Face transformers' LlamaForCausalLM
// on the golden cases: logits, hidden states per effective layer, loss,
// gradients of every parameter, greedy generation with and without the KV
// cache, parameter counts — for every sharing strategy and stored dtype.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { causalLmLoss } from './helpers/causal-lm-loss';
import { countParams } from '../engine/model/config';
import type { MobileLLM } from '../engine/model/model';
import { generate } from '../engine/generate/generate';
import { GOLDEN_CASES, goldenDir, goldenExpected, goldenTensors, maxAbs, maxAbsDiff } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

const GREEDY = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

describe.each(TEST_BACKENDS)('backend %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  describe.each(GOLDEN_CASES)('%s', (name) => {
    const expected = goldenExpected(name);
    const gold = goldenTensors(name);
    let model: MobileLLM;
    let ids: tf.Tensor2D;

    beforeAll(() => {
      model = loadModel(goldenDir(name), { wrap: (t) => tf.variable(t) }).model;
      const { values, shape } = gold.ids();
      ids = tf.tensor2d(values, shape as [number, number], 'int32');
    });
    afterAll(() => {
      model.dispose();
      ids.dispose();
    });

    it('has the parameter count and layer order of the reference', () => {
      const counts = countParams(model.config);
      expect(counts.total).toBe(expected.param_count);
      expect(counts.embedding).toBe(expected.param_count_embedding);
      expect(model.schedule).toEqual(expected.effective_layer_order);
    });

    it('gives the reference logits (atol 1e-4) and hidden states per effective layer', () => {
      const hidden: tf.Tensor2D[] = [];
      const logits = model.forward(ids, { trace: { hidden } });
      const want = gold.get('logits');
      expect(logits.shape).toEqual(want.shape);
      expect(maxAbsDiff(logits.dataSync(), want.values)).toBeLessThan(1e-4);
      expect(hidden.length).toBe(model.numLayers + 1);
      hidden.forEach((h, k) => {
        const ref = gold.get(`hidden_states.${k}`);
        expect(maxAbsDiff(h.dataSync(), ref.values), `hidden_states.${k}`).toBeLessThan(1e-4);
      });
      tf.dispose([logits, ...hidden]);
    });

    it('gives the reference loss (1e-5) and gradient of every parameter (1e-4 of its max)', () => {
      const params = model.namedParams();
      const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(ids), ids));
      expect(Math.abs(value.dataSync()[0] - expected.loss)).toBeLessThan(1e-5);
      const byVar = new Map(Object.entries(grads));
      expect(byVar.size).toBe(params.size);
      for (const [pname, ref] of params) {
        const g = byVar.get((ref.tensor as tf.Variable).name);
        expect(g, `gradient of ${pname}`).toBeDefined();
        const inCkptLayout = ref.transposed ? tf.transpose(g!) : g!;
        const want = gold.get(`grad.${pname}`);
        expect(inCkptLayout.shape).toEqual(want.shape);
        const err = maxAbsDiff(inCkptLayout.dataSync(), want.values) / maxAbs(want.values);
        expect(err, `grad.${pname}`).toBeLessThan(1e-4);
        if (inCkptLayout !== g) inCkptLayout.dispose();
      }
      tf.dispose([value, ...byVar.values()]);
    });

    it('generates the reference greedy tokens with and without the KV cache', async () => {
      const { prompt_ids, new_ids, max_new_tokens } = expected.generation;
      const cached = await generate(model, prompt_ids, { ...GREEDY, maxNewTokens: max_new_tokens, stopAtEos: false });
      expect(cached.ids).toEqual(new_ids);
      // Without the cache: recompute the whole sequence for every token.
      const seq = [...prompt_ids];
      for (let i = 0; i < max_new_tokens; i++) {
        const next = tf.tidy(() => {
          const logits = model.forward(tf.tensor2d([seq], [1, seq.length], 'int32'), { lastOnly: true });
          return tf.argMax(logits.reshape([-1])).dataSync()[0];
        });
        seq.push(next);
      }
      expect(seq.slice(prompt_ids.length)).toEqual(new_ids);
    });
  });
});
