// Quantized layers behind the model's Linear interface. The integer codes stay
// in JavaScript typed arrays (TensorFlow.js has no int8 dtype) and are the only
// copy of the weights unless the model's DequantCache is given room:
//
//   a cached float32 ŵ: tf.matMul with it, as a float model would.
//   up to 4 rows (decoding), not cached: y = x · ŵ straight from the codes in
//     JS (codes.ts matvec) — 1 or ½ byte read per weight, no float copy.
//   more rows (prefill, scoring), not cached: build the float32 ŵ [in, out]
//     of this ONE layer, tf.matMul, dispose it. Building it costs several
//     matmuls (dequantizing in JS, uploading, XNNPACK re-packing a weight it
//     has not seen).
// A layer is cached at its first use when the cache has room.
import * as tf from '@tensorflow/tfjs';
import type { Linear } from '../model/linear';
import { codeBytes, dequantize, dequantizeColumns, matvec, type QuantizedWeight } from './codes';

/** Inputs of at most this many rows are multiplied from the codes. */
export const FROM_CODES_MAX_ROWS = 4;

/**
 * Dequantized float32 weights kept between uses, within a byte budget.
 * Policy: first come, kept until disposed (no eviction). Every forward pass
 * walks the layers in the same order, and for such a cyclic scan LRU
 * with a budget below the working set hits never (each layer is evicted just
 * before its next use), while keeping a fixed set hits budget/total of the
 * time — the best any policy can do.
 */
export class DequantCache {
  private used = 0;
  private readonly held = new Map<object, tf.Tensor2D>();

  constructor(readonly budgetBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  get(owner: object): tf.Tensor2D | undefined {
    return this.held.get(owner);
  }

  hasRoom(bytes: number): boolean {
    return this.used + bytes <= this.budgetBytes;
  }

  /** Keeps `w` for `owner` (the cache then owns it); check hasRoom first. */
  keep(owner: object, w: tf.Tensor2D): void {
    if (!this.hasRoom(w.size * 4))
      throw new Error(`dequantized weight of ${w.size * 4} bytes does not fit the cache's ${this.budgetBytes - this.used} free bytes`);
    this.held.set(owner, tf.keep(w));
    this.used += w.size * 4;
  }

  release(owner: object): void {
    const w = this.held.get(owner);
    if (!w) return;
    this.used -= w.size * 4;
    this.held.delete(owner);
    w.dispose();
  }
}

/**
 * Per-token (per-row) asymmetric min-max 8-bit fake quantization, at the input
 * of every W8A8 linear. For each row x of [rows, cols]:
 *   lo = min(0, min x), hi = max(0, max x), s = (hi − lo) / 255 (1 if hi = lo),
 *   z = round(−lo / s),  x̂ = (clamp(round(x / s) + z, 0, 255) − z) · s
 * Asymmetric because its step (hi − lo)/255 is never larger than symmetric's
 * max|x|/127 and is up to 2× smaller on one-sided rows (post-SiLU products
 * lean negative-small/positive-large); the zero point costs an integer kernel
 * one extra per-row term. Every step is float32 arithmetic (Math.fround) and
 * round() is half to even, as tf.round and ONNX QuantizeLinear compute it.
 */
export function fakeQuantRows(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let lo = 0;
    let hi = 0;
    for (let k = base; k < base + cols; k++) {
      const v = x[k];
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const range = Math.fround(hi - lo);
    const s = range > 0 ? Math.fround(range / 255) : 1;
    const z = roundHalfEven(Math.fround(-lo / s));
    for (let k = base; k < base + cols; k++) {
      // roundHalfEven inlined by hand: this loop is the cost of W8A8 simulation
      const v = Math.fround(x[k] / s);
      let q = Math.floor(v + 0.5);
      if (q - v === 0.5 && (q & 1) !== 0) q -= 1;
      out[k] = (Math.min(255, Math.max(0, q + z)) - z) * s; // (q − z) is exact; the store rounds the product to float32
    }
  }
  return out;
}

/**
 * Round half to even, for float32 values |v| < 2³¹ (so v + ½ is exact): half
 * up, then an exact tie that went to an odd number goes back down. ⌊v + ½⌋
 * runs several times faster than Math.round in V8, and the tie branch is
 * almost never taken (a data-dependent branch costs ~15 ns here).
 */
function roundHalfEven(v: number): number {
  const r = Math.floor(v + 0.5);
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/** fakeQuantRows on a tensor [n, in]. */
export function fakeQuantPerToken(x: tf.Tensor2D): tf.Tensor2D {
  const [rows, cols] = x.shape;
  return tf.tensor2d(fakeQuantRows(x.dataSync() as Float32Array, rows, cols), [rows, cols]);
}

export type ActivationQuant = 'none' | 'int8-per-token';

export class QuantizedLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(
    readonly weight: QuantizedWeight,
    readonly activations: ActivationQuant,
    private readonly cache: DequantCache,
  ) {
    this.inFeatures = weight.inFeatures;
    this.outFeatures = weight.outFeatures;
  }

  /** ŵ [in, out] as a new tensor (the caller disposes it). */
  dequantized(): tf.Tensor2D {
    return tf.tensor2d(dequantize(this.weight), [this.inFeatures, this.outFeatures]);
  }

  /** The cached ŵ; built and kept now if the cache has room for it. */
  private cachedWeight(): tf.Tensor2D | undefined {
    const held = this.cache.get(this);
    if (held || !this.cache.hasRoom(this.inFeatures * this.outFeatures * 4)) return held;
    const w = this.dequantized();
    this.cache.keep(this, w);
    return w;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    const [rows, cols] = x.shape;
    const quantizeInput = this.activations === 'int8-per-token';
    const cached = this.cachedWeight();
    if (!cached && rows <= FROM_CODES_MAX_ROWS) {
      const values = x.dataSync() as Float32Array;
      const input = quantizeInput ? fakeQuantRows(values, rows, cols) : values;
      return tf.tensor2d(matvec(this.weight, input, rows), [rows, this.outFeatures]);
    }
    const input = quantizeInput ? fakeQuantPerToken(x) : x;
    const w = cached ?? this.dequantized();
    const y = tf.matMul(input, w) as tf.Tensor2D;
    if (!cached) w.dispose();
    if (input !== x) input.dispose();
    return y;
  }

  /** Bytes of the codes, scales and zero points. */
  get codeBytes(): number {
    return codeBytes(this.weight);
  }

  /** Bytes of the cached float32 copy (0 when not cached). */
  get cachedBytes(): number {
    return (this.cache.get(this)?.size ?? 0) * 4;
  }

  dispose(): void {
    this.cache.release(this);
  }
}

/**
 * A quantized token embedding [hidden, vocab] (in = hidden, out = vocab, so
 * one scale per token, groups along hidden), serving as lookup and, when
 * shared, as the output head — the quantized counterpart of TokenEmbedding.
 */
export class QuantizedEmbedding extends QuantizedLinear {
  /** ids [n] → [n, hidden], dequantizing only the looked-up columns. */
  lookup(ids: tf.Tensor1D): tf.Tensor2D {
    const cols = ids.dataSync();
    return tf.tensor2d(dequantizeColumns(this.weight, cols), [cols.length, this.inFeatures]);
  }

  /** TokenEmbedding's float table: there is none (the model code only calls lookup and apply). */
  get wT(): tf.Tensor2D {
    throw new Error('model.embed_tokens is quantized: it has no float weight');
  }
}
