// The ONNX Runtime path against Hugging Face transformers on the golden cases
// (the same ones the TensorFlow.js model passes): logits of every position
// within 1e-4, the reference greedy tokens — for both operator sets, every
// sharing strategy, the untied head and every stored dtype.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { countParams } from '../engine/model/config';
import { generate } from '../engine/generate/generate';
import { exportMobileLLM, ONNX_OPS } from '../engine/onnx/mobilellm';
import type { OnnxRuntime } from '../engine/runtime/onnx';
import { GOLDEN_CASES, goldenDir, goldenExpected, goldenTensors, maxAbsDiff } from './helpers/golden';
import { onnxRuntime } from './helpers/model-runtime';

const GREEDY = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

beforeAll(async () => {
  await initBackend();
});

describe.each(ONNX_OPS)('%s operators', (ops) => {
  describe.each(GOLDEN_CASES)('%s', (name) => {
    const expected = goldenExpected(name);
    const gold = goldenTensors(name);
    let runtime: OnnxRuntime;

    beforeAll(async () => {
      const { model } = loadModel(goldenDir(name));
      runtime = await onnxRuntime(model, { ops });
      model.dispose();
    });
    afterAll(async () => {
      await runtime.dispose();
    });

    it('gives the reference logits of every position (atol 1e-4)', async () => {
      const { values, shape } = gold.ids();
      const [B, T] = shape;
      const want = gold.get('logits'); // [B, T, V]
      const V = want.shape[2];
      for (let b = 0; b < B; b++) {
        const ids = Array.from(values.subarray(b * T, (b + 1) * T));
        const logits = await runtime.session.forward(ids, runtime.newCache(), T);
        expect(logits.length).toBe(T * V);
        expect(maxAbsDiff(logits, want.values.subarray(b * T * V, (b + 1) * T * V)), `row ${b}`).toBeLessThan(1e-4);
      }
    });

    it('generates the reference greedy tokens with the KV cache', async () => {
      const { prompt_ids, new_ids, max_new_tokens } = expected.generation;
      const r = await generate(runtime, prompt_ids, { ...GREEDY, maxNewTokens: max_new_tokens, stopAtEos: false });
      expect(r.ids).toEqual(new_ids);
    });
  });
});

describe('the exported graph', () => {
  it.each(['tiny-ls-immediate', 'tiny-ls-repeat-all', 'tiny-ls-reverse', 'tiny-untied-mha'] as const)(
    '%s stores every unique parameter once (a shared block is one set of initializers)',
    (name) => {
      const { model } = loadModel(goldenDir(name));
      const c = model.config;
      const params = countParams(c);
      for (const ops of ONNX_OPS) {
        const { model: graph, weights } = exportMobileLLM(model, { ops });
        const bytes = graph.length + weights.length;
        // Beyond the float32 weights: the rope tables (cos and sin, [maxPositions, d] plain, [maxPositions, d/2] for
        // GroupQueryAttention) and the graph itself (under 35 kB here).
        const rope = (ops === 'plain' ? 2 : 1) * c.maxPositions * c.headDim * 4;
        const overhead = bytes - params.total * 4 - rope;
        expect(overhead, ops).toBeGreaterThan(0);
        expect(overhead, ops).toBeLessThan(50_000);
        // A second copy of a block or of the head would not fit in that margin.
        expect(Math.min(params.perBlock, c.vocabSize * c.hiddenSize) * 4).toBeGreaterThan(50_000);
      }
      model.dispose();
    },
  );
});
