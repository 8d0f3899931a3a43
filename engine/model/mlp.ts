// Gated feed-forward (LlamaMLP): down( act(gate(x)) ⊙ up(x) ), with act
//   silu               x·σ(x)                                  SwiGLU (MobileLLM's)
//   relu               max(x, 0)                               ReGLU
//   gelu               x·Φ(x) = ½x·(1 + erf(x/√2))             GeGLU (exact, as torch's F.gelu)
//   gelu_pytorch_tanh  ½x·(1 + tanh(√(2/π)·(x + 0.044715x³)))  GeGLU (F.gelu(approximate='tanh'))
// The same three tensors for every act, so variants have equal parameters.
import * as tf from '@tensorflow/tfjs';
import type { HiddenAct } from './config';
import type { Linear } from './linear';

export interface MlpWeights {
  gate: Linear;
  up: Linear;
  down: Linear;
}

/** The activation of the gate, elementwise. */
export function activation(act: HiddenAct, g: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    switch (act) {
      case 'silu':
        return tf.mul(g, tf.sigmoid(g));
      case 'relu':
        return tf.relu(g);
      case 'gelu':
        return tf.mul(tf.mul(g, 0.5), tf.add(1, tf.erf(tf.mul(g, Math.SQRT1_2))));
      case 'gelu_pytorch_tanh': {
        const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(g, tf.mul(0.044715, tf.mul(g, tf.square(g)))));
        return tf.mul(tf.mul(g, 0.5), tf.add(1, tf.tanh(inner)));
      }
    }
  });
}

/** x [n, H] → [n, H] */
export function mlp(w: MlpWeights, x: tf.Tensor2D, act: HiddenAct): tf.Tensor2D {
  return tf.tidy(() => w.down.apply(tf.mul(activation(act, w.gate.apply(x)), w.up.apply(x)) as tf.Tensor2D));
}
