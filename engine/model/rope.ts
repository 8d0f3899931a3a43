// Rotary position embeddings, in Hugging Face's "rotate half" layout:
//   rope(x) = x·cos + rotate_half(x)·sin,   rotate_half([x1, x2]) = [−x2, x1]
// with frequencies θ^(−2i/d) repeated for both halves of the head.
// rotate_half is a fixed signed permutation, applied as one small matMul so it
// runs as a single kernel and differentiates for free (entries ±1 and 0: exact).
import * as tf from '@tensorflow/tfjs';

export class Rope {
  private readonly invFreq: Float64Array;
  /** [d, d] with rotate_half(x) = x · P */
  readonly rotateHalf: tf.Tensor2D;

  constructor(readonly headDim: number, theta: number) {
    const half = headDim / 2;
    this.invFreq = new Float64Array(half);
    // As transformers computes it, in float32: 1 / θ^(2i/d)
    for (let i = 0; i < half; i++) this.invFreq[i] = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
    const p = new Float32Array(headDim * headDim);
    for (let j = 0; j < half; j++) {
      p[(j + half) * headDim + j] = -1; // out[j]        = −x[j + d/2]
      p[j * headDim + j + half] = 1; //    out[j + d/2]  =  x[j]
    }
    this.rotateHalf = tf.keep(tf.tensor2d(p, [headDim, headDim]));
  }

  /** cos and sin for positions offset … offset+T−1, each [T, d]. */
  table(offset: number, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    const d = this.headDim;
    const half = d / 2;
    const cos = new Float32Array(T * d);
    const sin = new Float32Array(T * d);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        // position × inv_freq rounded to float32, as transformers does
        const angle = Math.fround((offset + t) * this.invFreq[i]);
        cos[t * d + i] = cos[t * d + i + half] = Math.cos(angle);
        sin[t * d + i] = sin[t * d + i + half] = Math.sin(angle);
      }
    }
    return { cos: tf.tensor2d(cos, [T, d]), sin: tf.tensor2d(sin, [T, d]) };
  }

  /** x [B, T, heads, d]; cos/sin [T, d] → [B, T, heads, d] */
  apply(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
    return tf.tidy(() => {
      const [B, T, h, d] = x.shape;
      const rotated = tf.matMul(tf.reshape(x, [B * T * h, d]) as tf.Tensor2D, this.rotateHalf).reshape([B, T, h, d]);
      const c = cos.reshape([T, 1, d]);
      const s = sin.reshape([T, 1, d]);
      return tf.add(tf.mul(x, c), tf.mul(rotated, s)) as tf.Tensor4D;
    });
  }

  dispose(): void {
    this.rotateHalf.dispose();
  }
}
