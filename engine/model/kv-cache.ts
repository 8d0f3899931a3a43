// Key/value cache for incremental decoding: one slot per *effective* layer
// (a shared block that runs twice sees different inputs each time, so it
// needs two slots). Each slot holds k and v as [B, kvHeads, S, headDim].
import * as tf from '@tensorflow/tfjs';

interface Slot {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

export class KVCache {
  private readonly slots: (Slot | null)[];
  /** Tokens already in the cache (the position of the next token). */
  length = 0;

  constructor(readonly numLayers: number) {
    this.slots = new Array(numLayers).fill(null);
  }

  /**
   * Appends this step's k and v ([B, kvHeads, T, d]) to layer `layer` and
   * returns the full k and v. The stored tensors outlive tf.tidy scopes.
   */
  append(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): Slot {
    const old = this.slots[layer];
    const next: Slot = old ? { k: tf.keep(tf.concat([old.k, k], 2)), v: tf.keep(tf.concat([old.v, v], 2)) } : { k: tf.keep(k.clone()), v: tf.keep(v.clone()) };
    if (old) {
      old.k.dispose();
      old.v.dispose();
    }
    this.slots[layer] = next;
    return next;
  }

  /** Bytes held by the cache. */
  bytes(): number {
    return this.slots.reduce((n, s) => n + (s ? (s.k.size + s.v.size) * 4 : 0), 0);
  }

  /** Drops everything after the first `length` tokens (used when a prompt shares a prefix). */
  truncate(length: number): void {
    if (length >= this.length) return;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (!s) continue;
      if (length === 0) {
        s.k.dispose();
        s.v.dispose();
        this.slots[i] = null;
        continue;
      }
      const [B, h, , d] = s.k.shape;
      const k = tf.keep(tf.slice(s.k, [0, 0, 0, 0], [B, h, length, d]));
      const v = tf.keep(tf.slice(s.v, [0, 0, 0, 0], [B, h, length, d]));
      s.k.dispose();
      s.v.dispose();
      this.slots[i] = { k, v };
    }
    this.length = length;
  }

  dispose(): void {
    this.truncate(0);
  }
}
