// A linear layer without bias, y = x · W. Weights are held as [in, out] (the
// transpose of PyTorch's [out, in]) so that the product needs no transpose per
// call. Quantized and LoRA layers implement the same interface, so the model
// code is the same for every kind of weight.
import * as tf from '@tensorflow/tfjs';

export interface Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** [n, in] → [n, out] */
  apply(x: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

export class DenseLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  /** `w` is [in, out]; a tf.Variable when it is trained. */
  constructor(readonly w: tf.Tensor2D) {
    [this.inFeatures, this.outFeatures] = w.shape;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(x, this.w);
  }

  dispose(): void {
    this.w.dispose();
  }
}
