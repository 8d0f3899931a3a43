// SwiGLU feed-forward: down( silu(gate(x)) ⊙ up(x) ).
import * as tf from '@tensorflow/tfjs';
import type { Linear } from './linear';

export interface MlpWeights {
  gate: Linear;
  up: Linear;
  down: Linear;
}

/** x [n, H] → [n, H] */
export function mlp(w: MlpWeights, x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const g = w.gate.apply(x);
    const silu = tf.mul(g, tf.sigmoid(g));
    return w.down.apply(tf.mul(silu, w.up.apply(x)) as tf.Tensor2D);
  });
}
