// AdamW against torch.optim.AdamW on the golden cases (one step with the
// golden gradients: every parameter after the step, and the loss of a fresh
// forward), the gradients of both backprop modes against transformers', and
// the learning-rate schedules against transformers' formulas.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { causalLmLoss } from './helpers/causal-lm-loss';
import type { MobileLLM } from '../engine/model/model';
import { AdamW, clipGlobalNorm, decaysByDefault } from '../engine/train/optimizer';
import { learningRate } from '../engine/train/schedule';
import { lossAndGrads, type GradMode } from '../engine/train/backprop';
import { disposeMicroBatch, microBatch } from '../engine/train/batching';
import { GOLDEN_CASES, goldenDir, goldenExpected, goldenTensors, maxAbs, maxAbsDiff } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

const WITH_AFTER_STEP = GOLDEN_CASES.filter((c) => goldenExpected(c).adamw.after_step_params_stored);
/** One case per architecture (the dtype and file-format variants share tiny-gqa's graph). */
const ARCHITECTURES = GOLDEN_CASES.filter((c) => !/-(fp16|bf16|bin)$/.test(c));

/** The model's parameters as trainable variables, by checkpoint name. */
function variablesOf(model: MobileLLM): Map<string, tf.Variable> {
  return new Map([...model.namedParams()].map(([name, ref]) => [name, ref.tensor as tf.Variable]));
}

/** A golden checkpoint-layout tensor in the model's layout. */
function inModelLayout(model: MobileLLM, name: string, t: { values: Float32Array; shape: number[] }): tf.Tensor {
  const x = tf.tensor(t.values, t.shape);
  if (!model.namedParams().get(name)!.transposed) return x;
  const xt = tf.transpose(x);
  x.dispose();
  return xt;
}

function goldenIds(name: (typeof GOLDEN_CASES)[number]): tf.Tensor2D {
  const { values, shape } = goldenTensors(name).ids();
  return tf.tensor2d(values, shape as [number, number], 'int32');
}

describe.each(TEST_BACKENDS)('backend %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  describe.each(WITH_AFTER_STEP)('%s', (name) => {
    const expected = goldenExpected(name);
    const gold = goldenTensors(name);
    let model: MobileLLM;
    beforeAll(() => {
      model = loadModel(goldenDir(name), { wrap: (t) => tf.variable(t) }).model;
    });
    afterAll(() => model.dispose());

    it('one AdamW step with the golden gradients gives torch.optim.AdamW parameters and loss', () => {
      const { lr, betas, eps, weight_decay } = expected.adamw;
      const params = variablesOf(model);
      // The golden's torch.optim.AdamW was given every parameter: weight decay on all of them.
      const opt = new AdamW(params, { beta1: betas[0], beta2: betas[1], eps, weightDecay: weight_decay }, () => true);
      const grads = new Map([...params.keys()].map((n) => [n, inModelLayout(model, n, gold.get(`grad.${n}`))]));
      opt.apply(grads, lr);
      for (const [n] of params) {
        const after = inModelLayout(model, n, gold.get(`after_adamw.${n}`));
        const got = params.get(n)!.dataSync();
        const want = after.dataSync();
        const g = grads.get(n)!.dataSync();
        // Where |grad| is near eps the step is ill-conditioned (see fixtures/golden/README.md, Tolerances).
        let worstWellConditioned = 0;
        let worstAny = 0;
        for (let i = 0; i < got.length; i++) {
          const d = Math.abs(got[i] - want[i]);
          worstAny = Math.max(worstAny, d);
          if (Math.abs(g[i]) > 1e-6) worstWellConditioned = Math.max(worstWellConditioned, d);
        }
        expect(worstWellConditioned, `after_adamw.${n}`).toBeLessThan(1e-5);
        expect(worstAny, `after_adamw.${n}`).toBeLessThan(2e-3);
        after.dispose();
      }
      const ids = goldenIds(name);
      const loss = tf.tidy(() => causalLmLoss(model.forward(ids), ids).dataSync()[0]);
      expect(Math.abs(loss - expected.loss_after_adamw_step)).toBeLessThan(1e-4);
      tf.dispose([ids, ...grads.values()]);
      opt.dispose();
    });
  });

  describe.each(ARCHITECTURES)('%s', (name) => {
    const expected = goldenExpected(name);
    const gold = goldenTensors(name);

    it.each(['tape', 'recompute'] as GradMode[])('%s backprop gives the reference loss and gradients, and a step gives the loss after', (mode) => {
      const { model } = loadModel(goldenDir(name), { wrap: (t) => tf.variable(t) });
      const params = variablesOf(model);
      const { values, shape } = gold.ids();
      const [B, T] = shape;
      const rows = Array.from({ length: B }, (_, b) => ({ ids: Array.from(values.subarray(b * T, (b + 1) * T)), learn: new Uint8Array(T).fill(1) }));
      const batch = microBatch(rows, B * (T - 1));
      const { loss, grads } = lossAndGrads(model, params, batch, mode);
      expect(Math.abs(loss - expected.loss)).toBeLessThan(1e-5);
      expect(grads.size).toBe(params.size);
      for (const [n, g] of grads) {
        const want = inModelLayout(model, n, gold.get(`grad.${n}`));
        const err = maxAbsDiff(g.dataSync(), want.dataSync()) / maxAbs(want.dataSync());
        expect(err, `grad.${n}`).toBeLessThan(1e-4);
        want.dispose();
      }
      const { lr, betas, eps, weight_decay } = expected.adamw;
      const opt = new AdamW(params, { beta1: betas[0], beta2: betas[1], eps, weightDecay: weight_decay }, () => true);
      opt.apply(grads, lr);
      const ids = goldenIds(name);
      const after = tf.tidy(() => causalLmLoss(model.forward(ids), ids).dataSync()[0]);
      expect(Math.abs(after - expected.loss_after_adamw_step)).toBeLessThan(1e-4);
      tf.dispose([ids, ...grads.values()]);
      disposeMicroBatch(batch);
      opt.dispose();
      model.dispose();
    });
  });

  it('clips the global norm like torch.nn.utils.clip_grad_norm_', () => {
    const grads = new Map<string, tf.Tensor>([
      ['a', tf.tensor1d([3, 0])],
      ['b', tf.tensor2d([[0, 4]])],
    ]);
    expect(clipGlobalNorm(grads, 10)).toBeCloseTo(5, 6); // under the limit: unchanged
    expect(Array.from(grads.get('a')!.dataSync())).toEqual([3, 0]);
    expect(clipGlobalNorm(grads, 1)).toBeCloseTo(5, 6);
    const coef = 1 / (5 + 1e-6);
    expect(grads.get('a')!.dataSync()[0]).toBeCloseTo(3 * coef, 6);
    expect(grads.get('b')!.dataSync()[1]).toBeCloseTo(4 * coef, 6);
    tf.dispose([...grads.values()]);
  });
});

describe('weight decay groups (Hugging Face Trainer)', () => {
  it.each([
    ['model.embed_tokens.weight', true],
    ['model.layers.3.self_attn.q_proj.weight', true],
    ['model.layers.3.input_layernorm.weight', false],
    ['model.layers.3.post_attention_layernorm.weight', false],
    ['model.norm.weight', false],
    ['lm_head.weight', true],
    ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', true],
  ])('%s decays: %s', (name, decays) => {
    expect(decaysByDefault(name)).toBe(decays);
  });
});

describe('learning-rate schedules', () => {
  // transformers' lr_lambda values, peak 1e-3, warmup 10 of 100 steps.
  const s = { peakLr: 1e-3, warmupSteps: 10, totalSteps: 100 };
  it.each([
    ['cosine', 0, 0],
    ['cosine', 5, 5e-4],
    ['cosine', 10, 1e-3],
    ['cosine', 55, 5e-4],
    ['cosine', 100, 0],
    ['linear', 10, 1e-3],
    ['linear', 55, 5e-4],
    ['linear', 91, 1e-4],
    ['constant', 3, 3e-4],
    ['constant', 80, 1e-3],
  ] as const)('%s at step %d is %f', (decay, step, lr) => {
    expect(learningRate(step, { ...s, decay })).toBeCloseTo(lr, 12);
  });

  it('cosine with a floor ends at the floor, and a cosine quarter point matches ½(1 + cos(π/4))', () => {
    expect(learningRate(100, { ...s, decay: 'cosine', minLrRatio: 0.1 })).toBeCloseTo(1e-4, 12);
    expect(learningRate(32.5, { ...s, decay: 'cosine' })).toBeCloseTo(1e-3 * 0.5 * (1 + Math.cos(Math.PI / 4)), 12);
  });
});
