// Schedules and costs (engine/inspect/schedule-costs.ts): every strategy and
// number of repeats against independent formulas, storage unchanged by
// sharing, the official parameter counts, and the FLOP and KV-cache formulas
// against the work the forward pass really does — its matmuls counted from
// tf.profile, its cache measured — on every backend.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { PRESET_NAMES, preset } from '../engine/model/presets';
import { sharingSchedule, type SharingStrategy } from '../engine/model/sharing';
import type { MobileLLM } from '../engine/model/model';
import { costTable, flopCoefficients, flopsPerToken, kvCacheValuesPerToken } from '../engine/inspect/schedule-costs';
import { StrategyCosts } from '../engine/inspect/schema';
import { FIXTURES, goldenDir, goldenTensors, type GoldenCase } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

/** Effective layer k → block, written out per strategy (not via sharingSchedule). */
const reference: Record<Exclude<SharingStrategy, 'none'>, (k: number, N: number, R: number) => number> = {
  immediate: (k, _N, R) => Math.floor(k / R),
  repeat_all: (k, N) => k % N,
  reverse: (k, N) => (Math.floor(k / N) % 2 === 0 ? k % N : N - 1 - (k % N)),
};

describe('schedules', () => {
  it('match hand-written examples', () => {
    expect(sharingSchedule(3, { strategy: 'immediate', repeats: 3 })).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2]);
    expect(sharingSchedule(3, { strategy: 'repeat_all', repeats: 3 })).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2]);
    expect(sharingSchedule(3, { strategy: 'reverse', repeats: 3 })).toEqual([0, 1, 2, 2, 1, 0, 0, 1, 2]);
    expect(sharingSchedule(3, { strategy: 'none', repeats: 1 })).toEqual([0, 1, 2]);
  });

  it.each([1, 2, 3, 5])('match the per-strategy formulas for %i blocks, repeats 2–4, and run each block exactly `repeats` times', (N) => {
    for (const R of [2, 3, 4]) {
      const rows = costTable({ ...preset('125M'), numBlocks: N }, R, 64);
      expect(rows.map((r) => r.variant)).toEqual(['same-storage', 'shared', 'shared', 'shared', 'same-depth']);
      expect(rows[0].schedule).toEqual([...Array(N).keys()]);
      expect(rows[4].schedule).toEqual([...Array(N * R).keys()]);
      for (const row of rows.slice(1, 4)) {
        const strategy = row.sharing.strategy as keyof typeof reference;
        expect(row.sharing.repeats).toBe(R);
        expect(row.effectiveDepth).toBe(N * R);
        expect(row.schedule).toEqual(Array.from({ length: N * R }, (_, k) => reference[strategy](k, N, R)));
        for (let b = 0; b < N; b++) expect(row.schedule.filter((x) => x === b)).toHaveLength(R);
      }
    }
  });
});

describe('costs of the official presets (no weights)', () => {
  const official = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'golden', 'param-counts.json'), 'utf8')).configs as Record<
    string,
    { total_params: number; params_per_block: number }
  >;

  it.each(PRESET_NAMES)('%s: follows the schema; sharing leaves storage unchanged; same depth costs (R−1)·N blocks more', (name) => {
    const c = preset(name);
    for (const R of [2, 3]) {
      const rows = costTable(c, R, 512);
      for (const row of rows) expect(StrategyCosts.safeParse(row).success).toBe(true);
      const [storage, ...rest] = rows;
      const depth = rest.pop()!;
      for (const shared of rest) {
        expect(shared.params).toEqual(storage.params);
        expect(shared.bytes).toEqual(storage.bytes);
        // …but the work and the cache are those of the deeper model.
        expect(shared.flops).toEqual(depth.flops);
        expect(shared.kvCacheBytesPerToken).toEqual(depth.kvCacheBytesPerToken);
      }
      expect(depth.params.total - storage.params.total).toBe((R - 1) * c.numBlocks * storage.params.perBlock);
      expect(storage.bytes).toEqual({
        fp32: 4 * storage.params.total,
        fp16: 2 * storage.params.total,
        int8: storage.params.total,
        int4: Math.ceil(storage.params.total / 2),
      });
    }
  });

  it.each(Object.keys(official))('%s: the official parameter count (with and without -LS)', (size) => {
    for (const name of [size, `${size}-LS`]) {
      const [storage] = costTable(preset(name), 2, 512);
      expect(storage.params.total).toBe(official[size].total_params);
      expect(storage.params.perBlock).toBe(official[size].params_per_block);
    }
  });

  it('125M at 512 tokens: the FLOPs and KV cache written out', () => {
    const [storage, immediate] = costTable(preset('125M'), 2, 512);
    // q 576·576, k and v 576·192, o 576·576, gate/up/down 576·1536 per token and block; head 32000·576.
    const blockMacs = 576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536;
    expect(storage.flops.linear).toBe(2 * 30 * blockMacs);
    expect(storage.flops.head).toBe(2 * 32000 * 576);
    expect(storage.flops.attentionPerKey).toBe(4 * 30 * 9 * 64);
    expect(storage.flops.atContext).toBe(2 * 30 * blockMacs + 2 * 32000 * 576 + 512 * 4 * 30 * 9 * 64);
    expect(immediate.flops.linear).toBe(2 * storage.flops.linear);
    // K and V: 3 kv heads × 64 per layer, 2 bytes each in fp16.
    expect(storage.kvCacheBytesPerToken.fp16).toBe(30 * 2 * 3 * 64 * 2);
    expect(immediate.kvCacheBytesPerToken.fp16).toBe(60 * 2 * 3 * 64 * 2);
  });

  it('refuses repeats below 2 and a context below 1', () => {
    expect(() => costTable(preset('125M'), 1, 512)).toThrow(/repeats/);
    expect(() => costTable(preset('125M'), 2, 0)).toThrow(/contextTokens/);
  });
});

/**
 * Multiply-adds of every matMul kernel `f` runs, from tf.profile's shapes:
 * output [..., m, n] from a [..., m, k] (or its transpose) → m·n·k per batch.
 * RoPE's rotate_half runs as a matMul by a fixed ±1 permutation [d, d]
 * (engine/model/rope.ts), an elementwise operation in disguise: counted apart.
 */
async function countedMatmuls(f: () => tf.Tensor, headDim: number): Promise<{ macs: number; rope: number }> {
  const info = await tf.profile(f);
  (info.result as tf.Tensor).dispose();
  let macs = 0;
  let rope = 0;
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  for (const k of info.kernels) {
    if (k.name !== 'BatchMatMul') continue;
    const [a, b] = k.inputShapes;
    if (b.length === 2 && b[0] === headDim && b[1] === headDim) {
      rope++;
      continue;
    }
    const out = k.outputShapes[0];
    const m = out[out.length - 2];
    const inner = size(a) / (size(a.slice(0, -2)) * m);
    macs += size(out) * inner;
  }
  return { macs, rope };
}

const CASES: GoldenCase[] = ['tiny-gqa', 'tiny-untied-mha', 'tiny-ls-immediate', 'tiny-ls-repeat-all', 'tiny-ls-reverse'];

describe.each(TEST_BACKENDS)('backend %s: formulas against the real forward pass', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  describe.each(CASES)('%s', (name) => {
    let model: MobileLLM;
    let ids: number[][];

    beforeAll(() => {
      model = loadModel(goldenDir(name)).model;
      const { values, shape } = goldenTensors(name).ids();
      ids = Array.from({ length: shape[0] }, (_, b) => Array.from(values.subarray(b * shape[1], (b + 1) * shape[1])));
      return () => model.dispose();
    });

    const ownRow = (context: number) => {
      const c = model.config;
      const rows = costTable(c, c.sharing.strategy === 'none' ? 2 : c.sharing.repeats, context);
      return rows.find((r) => r.sharing.strategy === c.sharing.strategy)!;
    };

    it('prefill: counted multiply-adds = B·T·flopsPerToken(T) / 2', async () => {
      const [B, T] = [ids.length, ids[0].length];
      const input = tf.tensor2d(ids, [B, T], 'int32');
      const counted = await countedMatmuls(() => model.forward(input), model.config.headDim);
      input.dispose();
      const row = ownRow(T);
      expect(counted.rope).toBe(2 * model.numLayers); // q and k of every layer
      expect(2 * counted.macs).toBe(B * T * row.flops.atContext);
      expect(row.flops.atContext).toBe(flopsPerToken(flopCoefficients(model.config, model.numLayers), T));
    });

    it('decode: counted multiply-adds of one step at context S = flopsPerToken(S) / 2', async () => {
      const S = ids[0].length;
      const cache = model.newCache();
      const prompt = tf.tensor2d([ids[0].slice(0, S - 1)], [1, S - 1], 'int32');
      model.forward(prompt, { cache }).dispose();
      const next = tf.tensor2d([[ids[0][S - 1]]], [1, 1], 'int32');
      const counted = await countedMatmuls(() => model.forward(next, { cache }), model.config.headDim);
      tf.dispose([prompt, next]);
      cache.dispose();
      expect(2 * counted.macs).toBe(ownRow(S).flops.atContext);
    });

    it('KV cache: the bytes the cache holds = tokens · kvCacheBytesPerToken.fp32', () => {
      const [B, T] = [ids.length, ids[0].length];
      const cache = model.newCache();
      const input = tf.tensor2d(ids, [B, T], 'int32');
      model.forward(input, { cache }).dispose();
      input.dispose();
      expect(cache.bytes()).toBe(B * T * ownRow(T).kvCacheBytesPerToken.fp32);
      expect(ownRow(T).kvCacheBytesPerToken.fp32).toBe(4 * kvCacheValuesPerToken(model.config, model.numLayers));
      cache.dispose();
    });
  });
});
