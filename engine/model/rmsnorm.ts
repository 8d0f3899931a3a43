// RMSNorm (LLaMA): x / sqrt(mean(x²) + eps) · g, computed in float32.
import * as tf from '@tensorflow/tfjs';

/** x [n, H], gain [H] → [n, H] */
export function rmsNorm(x: tf.Tensor2D, gain: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const meanSq = tf.mean(tf.square(x), -1, true); // [n, 1]
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSq, eps))), gain) as tf.Tensor2D;
  });
}
