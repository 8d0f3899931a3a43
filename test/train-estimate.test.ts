// The estimate made before a run: memory by part, the gradient mode it picks,
// a clear refusal when the run cannot fit, the step's FLOPs, and the same time
// for the same set-up.
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { countParams } from '../engine/model/config';
import { nanoConfig, preset } from '../engine/model/presets';
import { estimateMemory, matmulRate, planTraining, stepFlops, WASM_HEAP_LIMIT, type TrainShape } from '../engine/train/estimate';
import { FinetuneConfig } from '../engine/train/config';
import { estimateRun, prepareData } from '../engine/train/run';

const lora125: TrainShape = { method: 'lora', loraRank: 8, loraTargets: ['q', 'v'], batchSize: 4, seqLen: 256 };
const full125: TrainShape = { ...lora125, method: 'full' };
const RATE = 50e9;

describe('memory', () => {
  it('counts weights, gradients and AdamW moments of what is trained', () => {
    const c = preset('125M');
    const P = countParams(c).total;
    const full = estimateMemory(c, full125, 'recompute');
    expect(full.weights).toBe(4 * P);
    expect(full.optimizer).toBe(8 * P + 4 * 7 * 32000 * 576); // + the update's temporaries of the embedding
    expect(full.gradients).toBe(4 * P);
    expect(estimateMemory(c, { ...full125, gradAccum: 4 }, 'recompute').gradients).toBe(8 * P); // the step's sum and one micro-batch's
    const lora = estimateMemory(c, lora125, 'recompute');
    expect(lora.trainableParams).toBe(460_800);
    expect(lora.optimizer).toBe(8 * 460_800 + 4 * 7 * 8 * 576);
    expect(lora.total).toBeLessThan(full.total);
  });

  it('activations grow with batch × length, and keeping the whole tape costs about the depth over recomputing', () => {
    const c = preset('125M');
    const a = estimateMemory(c, lora125, 'recompute').activations;
    expect(estimateMemory(c, { ...lora125, batchSize: 8 }, 'recompute').activations).toBeGreaterThan(1.5 * a);
    const ratio = estimateMemory(c, lora125, 'tape').activations / a;
    expect(ratio).toBeGreaterThan(15);
    expect(ratio).toBeLessThan(30);
  });
});

describe('planning', () => {
  it('keeps the whole tape when it fits easily, recomputes when it does not', () => {
    expect(planTraining(nanoConfig(), { ...lora125, batchSize: 1, seqLen: 32 }, 'wasm', RATE).memory.mode).toBe('tape');
    const plan = planTraining(preset('125M'), lora125, 'wasm', RATE);
    expect(plan.memory.mode).toBe('recompute');
    expect(plan.memory.total).toBeLessThan(3 * 1024 ** 3);
    expect(plan.limit).toBeLessThanOrEqual(WASM_HEAP_LIMIT);
  });

  it('refuses a run that cannot fit, saying what it needs, what there is and what to change', () => {
    expect(() => planTraining(preset('1.5B'), { ...full125, batchSize: 64, seqLen: 2048 }, 'wasm', RATE)).toThrow(
      /^training needs about \d+\.\d\d GB \(weights 6\.\d\d GB, gradients \d+\.\d\d GB, optimizer \d+\.\d\d GB, activations \d+\.\d\d GB for 64×2048 tokens\) but only \d+\.\d\d GB is available \(.+\); lower --batch-size or --max-seq-len, or use --method lora$/,
    );
    expect(() => planTraining(preset('1.5B'), { ...lora125, batchSize: 64, seqLen: 2048 }, 'cpu', RATE)).toThrow(
      /free memory \(.* of .*\); lower --batch-size or --max-seq-len$/,
    );
  });
});

describe('time', () => {
  it('a full fine-tuning step costs about 6 FLOPs per parameter per token, LoRA about 4, recomputing one forward more', () => {
    const c = preset('125M');
    const sixNP = 6 * 1024 * countParams(c).total;
    const full = stepFlops(c, full125, 'tape') / sixNP;
    expect(full).toBeGreaterThan(1);
    expect(full).toBeLessThan(1.3); // attention products and the head's recomputation on top
    const lora = stepFlops(c, lora125, 'tape') / sixNP;
    expect(lora / full).toBeGreaterThan(0.6);
    expect(lora / full).toBeLessThan(0.75);
    const forward = (stepFlops(c, lora125, 'recompute') - stepFlops(c, lora125, 'tape')) / sixNP;
    expect(forward).toBeGreaterThan(1 / 3);
    expect(forward).toBeLessThan(0.4);
    expect(planTraining(c, lora125, 'wasm', 1e11).stepSeconds).toBeCloseTo(stepFlops(c, lora125, 'recompute') / 1e11, 6);
  });
});

describe('a stable estimate', () => {
  beforeAll(() => initBackend());

  it('gives the same step time for two identical set-ups (the matmul rate is measured once per process)', () => {
    const root = path.resolve(import.meta.dirname, '..');
    const cfg = FinetuneConfig.parse({ model: path.join(root, 'resources/default-model'), data: path.join(root, 'resources/datasets/sea-questions.jsonl') });
    const first = estimateRun(cfg, prepareData(cfg));
    const second = estimateRun(cfg, prepareData(cfg));
    expect(second.stepSeconds).toBe(first.stepSeconds);
    expect(matmulRate()).toBe(matmulRate());
    expect(first.stepSeconds).toBeGreaterThan(0);
  });
});
