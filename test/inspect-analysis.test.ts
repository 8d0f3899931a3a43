// The analysis (engine/inspect/analysis.ts) and the whole report on the golden
// tiny models: the JSON validates against the schema (also after a JSON round
// trip), values are sane (a block is its own twin, entropies lie in
// [0, log keys], similarities are symmetric), hidden-state RMS agrees with the
// reference implementation's hidden states, nothing leaks; measured latency
// on a small shape is measured on ONNX Runtime (the chat's runtime), names it,
// and has the shape the schema promises.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { nanoConfig } from '../engine/model/presets';
import { quietContext } from '../engine/jobs/job';
import { activationAnalysis, tensorStats, weightAnalysis } from '../engine/inspect/analysis';
import { unshareModel } from '../engine/inspect/convert';
import { measureDecodeLatency } from '../engine/inspect/latency';
import { inspect } from '../engine/inspect/report';
import { HISTOGRAM_BINS, InspectReport, Latency, sig4 } from '../engine/inspect/schema';
import { GOLDEN_CASES, goldenDir, goldenTensors, type GoldenCase } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

const CASES: GoldenCase[] = ['tiny-gqa', 'tiny-untied-mha', 'tiny-ls-immediate', 'tiny-ls-repeat-all', 'tiny-ls-reverse'];

/** Row 0 of the golden input ids. */
function probeOf(name: GoldenCase): number[] {
  const { values, shape } = goldenTensors(name).ids();
  return Array.from(values.subarray(0, shape[1]));
}

function expectSymmetricUnitDiagonal(m: number[][]): void {
  m.forEach((row, i) => {
    expect(row[i]).toBe(1);
    row.forEach((v, j) => {
      expect(v).toBe(m[j][i]);
      expect(Math.abs(v)).toBeLessThanOrEqual(1);
    });
  });
}

describe('tensorStats', () => {
  it('computes norm, moments, range and a histogram that counts every value once', () => {
    const s = tensorStats('w', [2, 3], [0, 1, 2, 3, 4, 32]);
    expect(s).toMatchObject({ name: 'w', shape: [2, 3], min: 0, max: 32, mean: 7 });
    // Floats to 4 significant digits.
    expect(s.norm).toBe(sig4(Math.sqrt(0 + 1 + 4 + 9 + 16 + 1024)));
    expect(s.std).toBe(sig4(Math.sqrt([0, 1, 2, 3, 4, 32].reduce((a, x) => a + (x - 7) ** 2, 0) / 6)));
    expect(s.histogram).toHaveLength(HISTOGRAM_BINS);
    expect(s.histogram.slice(0, 5)).toEqual([1, 1, 1, 1, 1]); // bins of width 1
    expect(s.histogram[HISTOGRAM_BINS - 1]).toBe(1); // the maximum lands in the closed last bin
    expect(tensorStats('c', [3], [2, 2, 2]).histogram[0]).toBe(3);
  });
});

describe.each(TEST_BACKENDS)('backend %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  describe.each(CASES)('%s', (name) => {
    let report: InspectReport;

    beforeAll(async () => {
      const before = tf.memory().numTensors;
      report = await inspect(goldenDir(name), { probe: { ids: probeOf(name) } }, quietContext());
      expect(tf.memory().numTensors).toBe(before); // no tensor left behind
    });

    it('validates against the schema, also after a JSON round trip', () => {
      expect(InspectReport.safeParse(JSON.parse(JSON.stringify(report))).success).toBe(true);
      expect(report.target.kind).toBe('folder');
      expect(report.costs.rows).toHaveLength(5);
      expect(report.latency).toBeNull();
    });

    it('weights: symmetric similarities with a unit diagonal; one entry per block and tensor', () => {
      const w = report.analysis!.weights;
      const N = report.model.numBlocks;
      for (const m of Object.values(w.similarity)) {
        expect(m).toHaveLength(N);
        expectSymmetricUnitDiagonal(m);
      }
      expect(w.blocks.map((b) => b.block)).toEqual([...Array(N).keys()]);
      expect(w.blocks.flatMap((b) => b.layers).sort((a, b) => a - b)).toEqual([...Array(report.analysis!.schedule.length).keys()]);
      for (const b of w.blocks) {
        expect(b.tensors.map((t) => t.name)).toEqual([
          'input_layernorm.weight',
          'self_attn.q_proj.weight',
          'self_attn.k_proj.weight',
          'self_attn.v_proj.weight',
          'self_attn.o_proj.weight',
          'post_attention_layernorm.weight',
          'mlp.gate_proj.weight',
          'mlp.up_proj.weight',
          'mlp.down_proj.weight',
        ]);
        for (const t of b.tensors) expect(t.histogram.reduce((a, c) => a + c, 0)).toBe(t.shape.reduce((a, c) => a * c, 1));
      }
      expect(b0Shape(report, 'self_attn.k_proj.weight')).toEqual([report.model.numKvHeads * report.model.headDim, report.model.hiddenSize]);
      expect(w.globals.map((t) => t.name)).toEqual(
        report.model.shareEmbedding ? ['model.embed_tokens.weight', 'model.norm.weight'] : ['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight'],
      );
    });

    it('activations: entropies within [0, log T], consistent similarities, RMS as the reference hidden states', () => {
      const a = report.analysis!.activations!;
      const L = report.analysis!.schedule.length;
      const T = a.probe.tokens;
      expect(a.probe).toEqual({ source: 'ids', path: null, tokens: probeOf(name).length });
      expect(a.layers.block).toEqual(report.analysis!.schedule);
      for (const heads of a.layers.attnEntropy) {
        expect(heads).toHaveLength(report.model.numHeads);
        for (const e of heads) {
          expect(e).toBeGreaterThanOrEqual(0);
          expect(e).toBeLessThanOrEqual(Math.log(T));
          expect(e).toBeLessThanOrEqual(a.attnEntropyUniform * 1.0001); // nothing beats uniform attention
        }
      }
      expect(a.attnEntropyUniform).toBeCloseTo([...Array(T).keys()].reduce((s, t) => s + Math.log(t + 1), 0) / T, 3);
      expect(a.similarity).toHaveLength(L + 1);
      expectSymmetricUnitDiagonal(a.similarity);
      a.layers.cosInOut.forEach((c, k) => expect(c).toBe(a.similarity[k][k + 1]));
      expect(a.layers.cosUpdatePrev[0]).toBeNull();
      // hidden_states.{k+1} of the reference is the output of layer k (k < L−1); row 0 is our probe.
      const gold = goldenTensors(name);
      for (let k = 0; k < L - 1; k++) {
        const h = gold.get(`hidden_states.${k + 1}`);
        const row = h.values.subarray(0, h.shape[1] * h.shape[2]);
        const rms = Math.sqrt(row.reduce((s, x) => s + x * x, 0) / row.length);
        expect(a.layers.hiddenRms[k] / rms, `layer ${k}`).toBeCloseTo(1, 3);
      }
    });
  });

  it('a block and its copy are twins: similarity 1 between the unshared copies of one block', () => {
    const m = loadModel(goldenDir('tiny-ls-immediate')).model;
    const u = unshareModel(m); // blocks 0,1 ← block 0; 2,3 ← 1; 4,5 ← 2
    const w = weightAnalysis(u);
    expect(w.similarity.all[0][1]).toBe(1);
    expect(w.similarity.q[2][3]).toBe(1);
    expect(w.similarity.all[0][2]).toBeLessThan(0.5);
    expect(w.blocks[0].tensors).toEqual(w.blocks[1].tensors);
    // The same function, so the same activations.
    const ids = probeOf('tiny-ls-immediate');
    const a = activationAnalysis(m, ids, { source: 'ids', path: null });
    const b = activationAnalysis(u, ids, { source: 'ids', path: null });
    expect(b.layers.hiddenRms).toEqual(a.layers.hiddenRms);
    expect(b.layers.attnEntropy).toEqual(a.layers.attnEntropy);
    u.dispose();
    m.dispose();
  });
});

function b0Shape(r: InspectReport, tensor: string): number[] {
  return r.analysis!.weights.blocks[0].tensors.find((t) => t.name === tensor)!.shape;
}

describe('report details', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('a preset gives costs only, with the selected strategy its own', async () => {
    const r = await inspect('350M-LS', {}, quietContext());
    expect(r.target).toEqual({ kind: 'preset', name: '350M-LS', path: null });
    expect(r.analysis).toBeNull();
    expect(r.selected).toEqual({ strategy: 'immediate', repeats: 2 });
    expect(r.costs.contextTokens).toBe(512);
    const other = await inspect('350M', { strategy: 'reverse', repeats: 3, contextTokens: 128 }, quietContext());
    expect(other.selected).toEqual({ strategy: 'reverse', repeats: 3 });
    expect(other.costs.rows[4].physicalBlocks).toBe(3 * 32);
  });

  it('no probe and no tokenizer: weights analysed, activations null', async () => {
    const r = await inspect(goldenDir('tiny-gqa'), {}, quietContext());
    expect(r.analysis!.activations).toBeNull();
    expect(r.analysis!.weights.blocks).toHaveLength(4);
  });

  it('refuses probe ids outside the vocabulary', async () => {
    await expect(inspect(goldenDir('tiny-gqa'), { probe: { ids: [1, 512] } }, quietContext())).rejects.toThrow(/outside the vocabulary/);
  });

  it('every golden case can be inspected', async () => {
    for (const name of GOLDEN_CASES) {
      const r = await inspect(goldenDir(name), { probe: { ids: [1, 2, 3] } }, quietContext());
      expect(r.analysis!.activations!.probe.tokens).toBe(3);
    }
  });

  const latencyShape = nanoConfig({ vocabSize: 512, numBlocks: 2, hiddenSize: 64, intermediateSize: 128 });
  const latencyOpts = { repeats: 2, contextTokens: 8, steps: 3, prefills: 2, rounds: 2 };

  /** Rows, counts and the ratios' anchors, whichever runtime measured. */
  function expectLatencyShape(l: Latency): void {
    expect(Latency.safeParse(JSON.parse(JSON.stringify(l))).success).toBe(true);
    expect(l.rows.map((r) => [r.variant, r.sharing.strategy, r.physicalBlocks, r.effectiveDepth])).toEqual([
      ['same-storage', 'none', 2, 2],
      ['shared', 'immediate', 2, 4],
      ['shared', 'repeat_all', 2, 4],
      ['shared', 'reverse', 2, 4],
      ['same-depth', 'none', 4, 4],
    ]);
    for (const r of l.rows) {
      expect(r.decode.samples).toBe(6); // 3 steps × 2 rounds
      expect(r.prefill.samples).toBe(4); // 2 prefills × 2 rounds
      for (const t of [r.decode, r.prefill]) expect(t.q1 <= t.ms && t.ms <= t.q3).toBe(true);
    }
    expect(l.rows[0].decode.vsSameStorage).toBe(1);
    expect(l.rows[0].prefill.vsSameStorage).toBe(1);
    expect(l.rows[4].decode.vsSameDepth).toBe(1);
    expect(l.rows[4].prefill.vsSameDepth).toBe(1);
  }

  it('measured latency: on ONNX Runtime, the runtime the chat uses, and the report says so', async () => {
    const before = tf.memory().numTensors;
    const l = await measureDecodeLatency(latencyShape, latencyOpts, quietContext());
    expect(tf.memory().numTensors).toBe(before);
    // A silent fall back to TensorFlow.js would name it here, and list why ONNX Runtime was skipped.
    expect(l.runtime).toBe('onnx');
    expect(l.skipped).toEqual([]);
    expect(l.runtimeDescription).toMatch(/^onnx \(onnxruntime-node [\d.]+, cpu, \d+ threads?, contrib ops\)$/);
    expect(l.together).toBe(true); // a small shape: every session open at once
    expectLatencyShape(l);
  });

  it('measured latency on ONNX Runtime one session at a time (as large shapes are): the same rows and counts', async () => {
    const l = await measureDecodeLatency(latencyShape, { ...latencyOpts, together: false }, quietContext());
    expect(l.runtime).toBe('onnx');
    expect(l.together).toBe(false);
    expectLatencyShape(l);
  });

  it('measured latency on TensorFlow.js when forced: named, every variant timed, no leaks', async () => {
    const before = tf.memory().numTensors;
    const l = await measureDecodeLatency(latencyShape, { ...latencyOpts, runtime: 'tfjs' }, quietContext());
    expect(tf.memory().numTensors).toBe(before);
    expect(l.runtime).toBe('tfjs');
    expect(l.runtimeDescription).toMatch(/^tfjs \(/);
    expectLatencyShape(l);
  });

  it('measured latency: a prefill of 64 tokens through 8 layers takes longer than one decode token through 1', async () => {
    // Work differs 500-fold (64 tokens × 8 layers against 1 × 1); overheads alone cannot invert that on any machine.
    const l = await measureDecodeLatency(
      nanoConfig({ vocabSize: 512, numBlocks: 1, hiddenSize: 128, intermediateSize: 256 }),
      { repeats: 8, contextTokens: 64, steps: 5, prefills: 2, rounds: 1 },
      quietContext(),
    );
    expect(l.runtime).toBe('onnx');
    expect(l.rows.at(-1)!.prefill.ms).toBeGreaterThan(l.rows[0].decode.ms);
  });
});
