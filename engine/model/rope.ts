// Rotary position embeddings, in Hugging Face's "rotate half" layout:
//   rope(x) = x·cos + rotate_half(x)·sin,   rotate_half([x1, x2]) = [−x2, x1]
// with frequencies θ^(−2i/d) repeated for both halves of the head.
// rotate_half is a fixed signed permutation, applied as one small matMul so it
// runs as a single kernel and differentiates for free (entries ±1 and 0: exact).
import * as tf from '@tensorflow/tfjs';

/**
 * cos and sin of position × θ^(−2i/d) for positions offset … offset+T−1 and
 * i < d/2, each [T, d/2], rounded to float32 at each step as transformers
 * computes them. The one RoPE table of both runtimes.
 */
export function ropeAngles(headDim: number, theta: number, offset: number, T: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = new Float32Array(T * half);
  const sin = new Float32Array(T * half);
  for (let i = 0; i < half; i++) {
    const invFreq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
    for (let t = 0; t < T; t++) {
      const angle = Math.fround((offset + t) * invFreq);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Both halves of the head repeat a table: [rows, d/2] → [rows, d]. */
export function fullWidth(t: Float32Array, half: number): Float32Array {
  const rows = t.length / half;
  const out = new Float32Array(rows * half * 2);
  for (let r = 0; r < rows; r++) {
    const row = t.subarray(r * half, (r + 1) * half);
    out.set(row, r * 2 * half);
    out.set(row, r * 2 * half + half);
  }
  return out;
}

export class Rope {
  /** [d, d] with rotate_half(x) = x · P */
  readonly rotateHalf: tf.Tensor2D;

  constructor(
    readonly headDim: number,
    readonly theta: number,
  ) {
    const half = headDim / 2;
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
    const { cos, sin } = ropeAngles(d, this.theta, offset, T);
    return { cos: tf.tensor2d(fullWidth(cos, d / 2), [T, d]), sin: tf.tensor2d(fullWidth(sin, d / 2), [T, d]) };
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
