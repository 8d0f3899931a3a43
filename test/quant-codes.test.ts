// The integer codes (engine/quant/codes.ts) and the run-time pieces of the
// quantized layers: reconstruction bounds, int4 packing, per-token activation
// fake quantization, and the dequantized-weight cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { dequantize, dequantizeColumns, matvec, packInt4, quantizeInt4, quantizeInt8, type QuantizedWeight } from '../engine/quant/codes';
import { unpackInt4 } from './helpers/int4';
import { DequantCache, FROM_CODES_MAX_ROWS, QuantizedLinear, fakeQuantPerToken } from '../engine/quant/quantized-linear';
import { TEST_BACKENDS } from './helpers/backends';

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** [in, out] weights: Gaussian-ish columns, plus an all-zero column, a one-spike column and a constant column. */
function testWeights(inF: number, outF: number, seed = 1): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) {
    for (let j = 0; j < outF; j++) {
      const gauss = (r() + r() + r() + r() - 2) * 0.05 * (1 + j / outF);
      w[i * outF + j] = j === 0 ? 0 : j === 1 ? (i === 3 ? 1.5 : 0) : j === 2 ? 0.25 : gauss;
    }
  }
  return w;
}

/** Float32 rounding of q·s allows a few ulps beyond the exact bound. */
const SLACK = 1 + 1e-6;

describe('int8 per output channel (symmetric)', () => {
  const I = 96;
  const O = 40;
  const w = testWeights(I, O);
  const q = quantizeInt8(w, I, O);
  const d = dequantize(q);

  it('reconstructs every weight within scale/2 of its channel', () => {
    for (let i = 0; i < I; i++) {
      for (let j = 0; j < O; j++) {
        expect(Math.abs(w[i * O + j] - d[i * O + j])).toBeLessThanOrEqual((q.scales[j] / 2) * SLACK);
      }
    }
  });

  it('uses codes -127…127 with scale = max|w| / 127 per channel; an all-zero channel stays exactly 0', () => {
    expect(Math.min(...q.codes)).toBeGreaterThanOrEqual(-127);
    expect(Math.max(...q.codes)).toBe(127);
    expect(q.scales[0]).toBe(0);
    expect(Math.fround(1.5 / 127)).toBe(q.scales[1]);
    for (let i = 0; i < I; i++) expect(d[i * O]).toBe(0);
    expect(d[3 * O + 1]).toBeCloseTo(1.5, 6); // the spike is the channel maximum: exact up to float rounding
  });

  it('refuses a buffer that does not match the shape', () => {
    expect(() => quantizeInt8(new Float32Array(10), 3, 4)).toThrow('10 weights for a 3×4 matrix');
  });
});

describe('int4 per group (asymmetric, scale + zero point)', () => {
  const I = 128;
  const O = 24;
  const w = testWeights(I, O, 7);

  it.each([32, 64, 128])('group size %i: every weight within scale/2 of its group, zero points 0…15', (G) => {
    const q = quantizeInt4(w, I, O, G);
    const d = dequantize(q);
    expect(q.scales.length).toBe((I / G) * O);
    expect(Math.max(...q.zeros)).toBeLessThanOrEqual(15);
    for (let i = 0; i < I; i++) {
      for (let j = 0; j < O; j++) {
        const s = q.scales[Math.floor(i / G) * O + j];
        expect(Math.abs(w[i * O + j] - d[i * O + j])).toBeLessThanOrEqual((s / 2) * SLACK);
      }
    }
    for (let i = 0; i < I; i++) expect(d[i * O]).toBe(0); // the all-zero channel
  });

  it('smaller groups fit better', () => {
    const err = (G: number) => {
      const d = dequantize(quantizeInt4(w, I, O, G));
      return w.reduce((a, v, k) => a + (v - d[k]) ** 2, 0);
    };
    expect(err(32)).toBeLessThan(err(128));
  });

  it('refuses a group size that does not divide the input width', () => {
    expect(() => quantizeInt4(w, I, O, 48)).toThrow('group size 48 does not divide the input width 128');
  });
});

describe('int4 packing', () => {
  it('round-trips all 16 codes in both nibbles, low nibble = even input row', () => {
    // rows 0/1 of column c hold (c, 15 − c): every code appears in both positions
    const cols = 16;
    const codes = new Uint8Array(2 * cols);
    for (let c = 0; c < cols; c++) {
      codes[c] = c;
      codes[cols + c] = 15 - c;
    }
    const packed = packInt4(codes, 2, cols);
    expect(packed.length).toBe(cols);
    for (let c = 0; c < cols; c++) expect(packed[c]).toBe(c | ((15 - c) << 4));
    expect(Array.from(unpackInt4(packed, 2, cols))).toEqual(Array.from(codes));
  });

  it('round-trips a larger random matrix', () => {
    const r = rng(3);
    const codes = Uint8Array.from({ length: 64 * 10 }, () => Math.floor(r() * 16));
    expect(Array.from(unpackInt4(packInt4(codes, 64, 10), 64, 10))).toEqual(Array.from(codes));
  });

  it('refuses odd input widths and codes over 15', () => {
    expect(() => packInt4(new Uint8Array(3 * 4), 3, 4)).toThrow('the input width must be even, got 3');
    expect(() => unpackInt4(new Uint8Array(6), 3, 4)).toThrow('the input width must be even, got 3');
    expect(() => packInt4(Uint8Array.of(16, 0), 2, 1)).toThrow('code 16 does not fit in 4 bits');
  });
});

describe('embedding lookup from codes', () => {
  it.each([
    ['int8', quantizeInt8(testWeights(64, 50), 64, 50)],
    ['int4', quantizeInt4(testWeights(64, 50), 64, 50, 32)],
  ] as [string, QuantizedWeight][])('%s: dequantized columns equal the columns of the full dequantization', (_name, q) => {
    const full = dequantize(q);
    const cols = [0, 7, 49, 7];
    const rows = dequantizeColumns(q, cols);
    cols.forEach((c, n) => {
      for (let i = 0; i < 64; i++) expect(rows[n * 64 + i]).toBe(full[i * 50 + c]);
    });
    expect(() => dequantizeColumns(q, [50])).toThrow('column 50 is outside 0…49');
  });
});

describe('multiplying straight from the codes', () => {
  it.each([
    ['int8, width not a multiple of 4', quantizeInt8(testWeights(70, 33, 4), 70, 33)],
    ['int4 g32', quantizeInt4(testWeights(96, 33, 4), 96, 33, 32)],
    ['int4 g128', quantizeInt4(testWeights(128, 20, 6), 128, 20, 128)],
  ] as [string, QuantizedWeight][])('%s: x · ŵ for each row, as with the dequantized weight (float64 sums)', (_name, q) => {
    const I = q.inFeatures;
    const O = q.outFeatures;
    const r = rng(9);
    const x = Float32Array.from({ length: 3 * I }, () => r() - 0.5);
    const w = dequantize(q);
    const y = matvec(q, x, 3);
    for (let row = 0; row < 3; row++) {
      for (let j = 0; j < O; j++) {
        let want = 0;
        for (let i = 0; i < I; i++) want += x[row * I + i] * w[i * O + j];
        expect(Math.abs(y[row * O + j] - want)).toBeLessThan(1e-6 * (1 + Math.abs(want)));
      }
    }
  });
});

describe.each(TEST_BACKENDS)('on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('fake-quantizes activations per token: ≤ 256 levels per row, error ≤ step/2, zero exact', () => {
    const r = rng(11);
    const rows = 5;
    const n = 300;
    const x = new Float32Array(rows * n).map((_, k) => (Math.floor(k / n) === 1 ? r() * 3 : (r() - 0.3) * (1 + Math.floor(k / n))));
    x.fill(0, 3 * n, 4 * n); // an all-zero row
    x[4 * n + 5] = 0; // an exact zero inside a row
    const t = tf.tensor2d(x, [rows, n]);
    const yT = fakeQuantPerToken(t);
    const y = yT.dataSync();
    for (let row = 0; row < rows; row++) {
      const xs = x.subarray(row * n, (row + 1) * n);
      const lo = Math.min(0, ...xs);
      const hi = Math.max(0, ...xs);
      const step = (hi - lo) / 255;
      const levels = new Set(Array.from(y.subarray(row * n, (row + 1) * n)));
      expect(levels.size).toBeLessThanOrEqual(256);
      for (let k = 0; k < n; k++) expect(Math.abs(xs[k] - y[row * n + k])).toBeLessThanOrEqual(step / 2 + 1e-6);
    }
    for (let k = 3 * n; k < 4 * n; k++) expect(y[k]).toBe(0);
    expect(y[4 * n + 5]).toBe(0);
    // bit for bit the float32 formula in TensorFlow.js ops (round: half to even), which ONNX mirrors
    const ops = tf.tidy(() => {
      const lo = tf.minimum(tf.min(t, 1, true), 0);
      const hi = tf.maximum(tf.max(t, 1, true), 0);
      const range = tf.sub(hi, lo);
      const scale = tf.where(tf.greater(range, 0), tf.div(range, 255), tf.onesLike(range));
      const zero = tf.round(tf.div(tf.neg(lo), scale));
      return tf.mul(tf.sub(tf.clipByValue(tf.add(tf.round(tf.div(t, scale)), zero), 0, 255), zero), scale);
    });
    expect(Array.from(y)).toEqual(Array.from(ops.dataSync()));
    // ties go to the even code: 0.5 and 1.5 steps
    const ties = fakeQuantPerToken(tf.tensor2d([[0, 0.5, 1.5, 2.5, 255]], [1, 5]));
    expect(Array.from(ties.dataSync())).toEqual([0, 0, 2, 2, 255]);
    tf.dispose([t, yT, ops, ties]);
  });

  it('runs a W8A8 layer as fake-quantized input × dequantized weight', () => {
    const w = testWeights(32, 24, 5);
    const q = quantizeInt8(w, 32, 24);
    const layer = new QuantizedLinear(q, 'int8-per-token', new DequantCache(0));
    const x = tf.randomNormal([6, 32], 0, 1, 'float32', 2) as tf.Tensor2D;
    const got = layer.apply(x);
    const want = tf.tidy(() => tf.matMul(fakeQuantPerToken(x), tf.tensor2d(dequantize(q), [32, 24])));
    expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
    const weightOnly = new QuantizedLinear(q, 'none', new DequantCache(0)).apply(x);
    expect(Array.from(weightOnly.dataSync())).not.toEqual(Array.from(got.dataSync())); // the activations were quantized
    tf.dispose([x, got, want, weightOnly]);
  });

  it('multiplies a few rows from the codes and more rows through a float weight, with the same result', () => {
    const q = quantizeInt4(testWeights(64, 48, 8), 64, 48, 32);
    const layer = new QuantizedLinear(q, 'none', new DequantCache(0));
    const x = tf.randomNormal([FROM_CODES_MAX_ROWS + 2, 64], 0, 1, 'float32', 4) as tf.Tensor2D;
    const few = tf.slice(x, [0, 0], [FROM_CODES_MAX_ROWS, 64]) as tf.Tensor2D;
    const yFew = layer.apply(few);
    const yMany = layer.apply(x);
    const a = yFew.dataSync();
    const b = yMany.dataSync();
    for (let k = 0; k < a.length; k++) expect(Math.abs(a[k] - b[k])).toBeLessThan(1e-5);
    tf.dispose([x, few, yFew, yMany]);
  });

  describe('dequantized-weight cache', () => {
    const layers = (cache: DequantCache) => [0, 1, 2].map((s) => new QuantizedLinear(quantizeInt8(testWeights(16, 8, s + 20), 16, 8), 'none', cache));
    let x: tf.Tensor2D;
    beforeAll(() => {
      x = tf.ones([FROM_CODES_MAX_ROWS + 1, 16]); // enough rows to go through a float weight
    });
    afterAll(() => x.dispose());

    const run = (ls: QuantizedLinear[]) =>
      ls.map((l) => {
        const y = l.apply(x);
        const v = Array.from(y.dataSync());
        y.dispose();
        return v;
      });

    it('caches a layer at its first use, whatever the rows', () => {
      const cache = new DequantCache(Infinity);
      const [layer] = layers(cache);
      const one = tf.ones([1, 16]) as tf.Tensor2D;
      layer.apply(one).dispose();
      expect(layer.cachedBytes).toBe(16 * 8 * 4);
      expect(() => new DequantCache(100).keep({}, tf.zeros([10, 10]))).toThrow('does not fit');
      layer.dispose();
      one.dispose();
    });

    it('keeps the first layers that fit, never evicts, and gives identical outputs either way', () => {
      const before = tf.memory().numTensors;
      const none = layers(new DequantCache(0));
      const cache = new DequantCache(2 * 16 * 8 * 4); // room for two layers
      const some = layers(cache);
      const outNone = run(none);
      expect(none.map((l) => l.cachedBytes)).toEqual([0, 0, 0]);
      expect(tf.memory().numTensors).toBe(before);
      const outSome = run(some);
      run(some); // a second pass does not change what is held
      expect(some.map((l) => l.cachedBytes)).toEqual([512, 512, 0]);
      expect(cache.usedBytes).toBe(1024);
      expect(outSome).toEqual(outNone);
      for (const l of some) l.dispose();
      expect(cache.usedBytes).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('holds codes, scales and zero points compactly', () => {
      const l8 = new QuantizedLinear(quantizeInt8(testWeights(64, 32), 64, 32), 'none', new DequantCache(0));
      const l4 = new QuantizedLinear(quantizeInt4(testWeights(64, 32), 64, 32, 32), 'none', new DequantCache(0));
      expect(l8.codeBytes).toBe(64 * 32 + 32 * 4);
      expect(l4.codeBytes).toBe((64 * 32) / 2 + 2 * 32 * 4 + 2 * 32);
    });
  });
});
