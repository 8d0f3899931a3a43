// Causal grouped-query attention (GQA): numHeads query heads share numKvHeads
// key/value heads, query head h reading kv head ⌊h / group⌋ (as transformers'
// repeat_kv). Instead of repeating k and v, the query heads of a group are
// stacked as rows, so one matMul per kv head serves the whole group.
import * as tf from '@tensorflow/tfjs';
import type { Linear } from './linear';
import type { Rope } from './rope';
import type { KVCache } from './kv-cache';

export interface AttentionWeights {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
}

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

export interface AttentionContext {
  B: number;
  T: number;
  rope: Rope;
  cos: tf.Tensor2D; // [T, d]
  sin: tf.Tensor2D; // [T, d]
  cache?: KVCache;
  layer: number;
  /** Receives the attention probabilities [B, numHeads, T, S] (for inspection). */
  onProbs?: (layer: number, probs: tf.Tensor4D) => void;
}

/** Additive causal mask [group·T, S]: row r (position past + r mod T) sees keys 0 … past + r mod T. */
function causalMask(group: number, T: number, S: number): tf.Tensor2D {
  const past = S - T;
  const m = new Float32Array(group * T * S);
  for (let g = 0; g < group; g++) {
    for (let t = 0; t < T; t++) {
      const row = (g * T + t) * S;
      for (let s = past + t + 1; s < S; s++) m[row + s] = -1e9;
    }
  }
  return tf.tensor2d(m, [group * T, S]);
}

/** x [B·T, H] → [B·T, H] */
export function attention(w: AttentionWeights, x: tf.Tensor2D, shape: AttentionShape, ctx: AttentionContext): tf.Tensor2D {
  return tf.tidy(() => {
    const { numHeads: nh, numKvHeads: nkv, headDim: d } = shape;
    const { B, T } = ctx;
    const group = nh / nkv;
    // Project and rotate: [B, T, heads, d]
    const q = ctx.rope.apply(w.q.apply(x).reshape([B, T, nh, d]), ctx.cos, ctx.sin);
    const kNew = ctx.rope.apply(w.k.apply(x).reshape([B, T, nkv, d]), ctx.cos, ctx.sin);
    const vNew = w.v.apply(x).reshape([B, T, nkv, d]);
    // Heads first: [B, heads, T, d]
    let k = tf.transpose(kNew, [0, 2, 1, 3]) as tf.Tensor4D;
    let v = tf.transpose(vNew, [0, 2, 1, 3]) as tf.Tensor4D;
    if (ctx.cache) ({ k, v } = ctx.cache.append(ctx.layer, k, v)); // [B, nkv, S, d]
    const S = k.shape[2];
    // Query heads of one kv group stacked as rows: [B, nkv, group·T, d]
    const qg = tf.transpose(q, [0, 2, 1, 3]).reshape([B, nkv, group * T, d]);
    let scores = tf.mul(tf.matMul(qg, k, false, true), 1 / Math.sqrt(d)); // [B, nkv, group·T, S]
    if (T > 1) scores = tf.add(scores, causalMask(group, T, S));
    const probs = tf.softmax(scores, -1);
    if (ctx.onProbs) ctx.onProbs(ctx.layer, tf.keep(probs.reshape([B, nh, T, S]) as tf.Tensor4D));
    const out = tf
      .matMul(probs, v) // [B, nkv, group·T, d]
      .reshape([B, nh, T, d])
      .transpose([0, 2, 1, 3]) // [B, T, nh, d]
      .reshape([B * T, nh * d]) as tf.Tensor2D;
    return w.o.apply(out);
  });
}
