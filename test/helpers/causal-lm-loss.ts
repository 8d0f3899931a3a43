// Next-token cross-entropy: position t predicts token t+1 (Hugging Face's
// causal-LM loss with labels = input_ids), averaged over the positions whose
// weight is non-zero (e.g. only the answer tokens of a chat example).
//
// The plain version, differentiated by tfjs autodiff: a reference for the
// tests (the gradients against PyTorch's, the optimizer's steps). The trainer
// uses engine/train/loss.ts, the head and the loss fused in row chunks.
import * as tf from '@tensorflow/tfjs';

/** logits [N, V], targets [N] (int32), weights [N] (0/1) → mean NLL (scalar). */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, weights?: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const V = logits.shape[1];
    const lse = tf.logSumExp(logits, 1); // [N]
    const picked = tf.sum(tf.mul(logits, tf.oneHot(targets, V)), 1); // logit of the target, [N]
    const nll = tf.sub(lse, picked);
    if (!weights) return tf.mean(nll) as tf.Scalar;
    return tf.div(tf.sum(tf.mul(nll, weights)), tf.maximum(tf.sum(weights), 1)) as tf.Scalar;
  });
}

/**
 * logits [B, T, V] for ids [B, T] → mean loss over the B·(T−1) next-token
 * predictions. `mask` [B, T] marks which *target* tokens count (default all).
 */
export function causalLmLoss(logits: tf.Tensor3D, ids: tf.Tensor2D, mask?: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const [B, T, V] = logits.shape;
    const pred = tf.slice(logits, [0, 0, 0], [B, T - 1, V]).reshape([B * (T - 1), V]) as tf.Tensor2D;
    const targets = tf.slice(ids, [0, 1], [B, T - 1]).reshape([B * (T - 1)]) as tf.Tensor1D;
    const weights = mask ? (tf.slice(mask, [0, 1], [B, T - 1]).reshape([B * (T - 1)]) as tf.Tensor1D) : undefined;
    return crossEntropy(pred, targets, weights);
  });
}
