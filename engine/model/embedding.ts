// Token embedding, held transposed as [hidden, vocab] so that the same tensor
// serves as the output head without a per-token transpose or copy:
//   lookup:  ids → columns of Wᵀ → [n, hidden]
//   head:    [n, hidden] · Wᵀ → [n, vocab]
// With share_embedding (MobileLLM) one TokenEmbedding is both; otherwise the
// untied lm_head is a second one used only as a head.
import * as tf from '@tensorflow/tfjs';
import type { Linear } from './linear';

export class TokenEmbedding implements Linear {
  readonly inFeatures: number; // hidden
  readonly outFeatures: number; // vocab

  /** `wT` is [hidden, vocab]. */
  constructor(readonly wT: tf.Tensor2D) {
    [this.inFeatures, this.outFeatures] = wT.shape;
  }

  /** ids [n] → [n, hidden] */
  lookup(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.transpose(tf.gather(this.wT, ids, 1)) as tf.Tensor2D;
  }

  /** [n, hidden] → logits [n, vocab] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(x, this.wT);
  }

  dispose(): void {
    this.wT.dispose();
  }
}
