// The output head and the next-token cross-entropy as one differentiable op,
// computed in row chunks so that the [N, V] logits never exist whole (with a
// 32k vocabulary they are 131 MB per 1024 tokens, and autodiff through a
// plain logsumexp − target-logit loss keeps a dozen of them plus an [N, V] one-hot).
//
//   loss = Σ_i w_i · (logsumexp(h_i·W) − (h_i·W)[t_i]) / denom
//   ∂loss/∂logits_i = w_i/denom · (softmax(h_i·W) − onehot(t_i))
//   ∂h_i = ∂logits_i · Wᵀ          ∂W = Σ_i h_iᵀ · ∂logits_i
//
// The forward pass keeps softmax(h·W) for the backward pass while it is at
// most KEEP_PROBS floats (256 MB: 2048 tokens of a 32k vocabulary); beyond
// that the backward pass recomputes each chunk's logits (one more head matmul).
import * as tf from '@tensorflow/tfjs';

/** Rows per chunk: about 8M logits (32 MB) at a time. */
export const CHUNK_LOGITS = 8_000_000;
export const KEEP_PROBS = 1 << 26;

function chunkRows(V: number): number {
  return Math.max(1, Math.floor(CHUNK_LOGITS / V));
}

export interface Targets {
  /** Next token of each row, [N] (any id where the weight is 0). */
  targets: tf.Tensor1D;
  /** Loss weight of each row, [N]: 1 for the tokens learned, 0 for prompt and padding. */
  weights: tf.Tensor1D;
  /** Σ weights over the whole optimizer step (all micro-batches), so that accumulation equals one big batch. */
  denom: number;
}

/** Per-row logsumexp and target logit of h·W, chunk by chunk ([N] each), and each chunk's softmax if `keep`. */
function forwardChunks(h: tf.Tensor2D, wT: tf.Tensor2D, targets: tf.Tensor1D, keep: boolean): { lse: tf.Tensor1D; picked: tf.Tensor1D; probs: tf.Tensor2D[] } {
  return tf.tidy(() => {
    const [N] = h.shape;
    const V = wT.shape[1];
    const step = chunkRows(V);
    const lse: tf.Tensor1D[] = [];
    const picked: tf.Tensor1D[] = [];
    const probs: tf.Tensor2D[] = [];
    for (let r = 0; r < N; r += step) {
      const n = Math.min(step, N - r);
      const logits = tf.matMul(tf.slice(h, [r, 0], [n, -1]), wT); // [n, V]
      const l = tf.logSumExp(logits, 1, true); // [n, 1]
      lse.push(l.reshape([n]));
      if (keep) probs.push(tf.exp(tf.sub(logits, l)) as tf.Tensor2D);
      // flat index of (row, target) = row·V + target
      const flat = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(V, 'int32')), tf.slice(targets, [r], [n]));
      picked.push(tf.gather(logits.reshape([-1]), flat) as tf.Tensor1D);
    }
    return { lse: tf.concat(lse) as tf.Tensor1D, picked: tf.concat(picked) as tf.Tensor1D, probs };
  });
}

/** The loss alone (no gradient; validation). */
export function headLoss(h: tf.Tensor2D, wT: tf.Tensor2D, t: Targets): tf.Scalar {
  return tf.tidy(() => {
    const { lse, picked } = forwardChunks(h, wT, t.targets, false);
    return tf.div(tf.sum(tf.mul(tf.sub(lse, picked), t.weights)), t.denom) as tf.Scalar;
  });
}

/**
 * Weighted next-token NLL of the head `wT` [H, V] applied to hidden states
 * `h` [N, H], divided by `t.denom`. Differentiable in h, and in wT when
 * `trainHead` (a frozen head gets no [H, V] gradient computed at all).
 */
export function headCrossEntropy(h: tf.Tensor2D, wT: tf.Tensor2D, t: Targets, trainHead: boolean): tf.Scalar {
  const V = wT.shape[1];
  const step = chunkRows(V);
  const keep = h.shape[0] * V <= KEEP_PROBS;
  const backward = (dy: tf.Tensor, hs: tf.Tensor2D, lse: tf.Tensor1D, kept: tf.Tensor[]): tf.Tensor2D[] => {
    const [N] = hs.shape;
    const wRows = tf.tidy(() => tf.mul(t.weights, tf.div(dy, t.denom)).reshape([N, 1])); // w_i·dy/denom
    const w = tf.transpose(wT); // [V, H], once, so that ∂h is a plain matmul per chunk
    const dh: tf.Tensor2D[] = [];
    let dW: tf.Tensor2D | null = trainHead ? tf.zeros([wT.shape[0], V]) : null;
    for (let r = 0, c = 0; r < N; r += step, c++) {
      const n = Math.min(step, N - r);
      tf.tidy(() => {
        const hc = tf.slice(hs, [r, 0], [n, -1]);
        const probs = keep ? kept[c] : tf.exp(tf.sub(tf.matMul(hc, wT), tf.slice(lse, [r], [n]).reshape([n, 1]))); // [n, V]
        const coef = tf.slice(wRows, [r, 0], [n, 1]);
        const dLogits = tf.mul(tf.sub(probs, tf.oneHot(tf.slice(t.targets, [r], [n]), V)), coef); // [n, V]
        dh.push(tf.keep(tf.matMul(dLogits, w)));
        if (dW) {
          const next = tf.keep(tf.add(dW, tf.matMul(hc, dLogits, true, false))) as tf.Tensor2D;
          dW.dispose();
          dW = next;
        }
      });
    }
    const dhAll = tf.concat(dh) as tf.Tensor2D;
    tf.dispose([wRows, w, ...dh]);
    return dW ? [dhAll, dW] : [dhAll];
  };
  const forward = (hIn: tf.Tensor2D, save: tf.GradSaveFunc) => {
    const { lse, picked, probs } = forwardChunks(hIn, wT, t.targets, keep);
    save([hIn, lse, ...probs]);
    const value = tf.div(tf.sum(tf.mul(tf.sub(lse, picked), t.weights)), t.denom) as tf.Scalar; // as headLoss
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => backward(dy, saved[0] as tf.Tensor2D, saved[1] as tf.Tensor1D, saved.slice(2));
    return { value, gradFunc };
  };
  if (trainHead) {
    const op = tf.customGrad((hIn, _w, save) => forward(hIn as tf.Tensor2D, save as tf.GradSaveFunc));
    return op(h, wT) as tf.Scalar;
  }
  const op = tf.customGrad((hIn, save) => forward(hIn as tf.Tensor2D, save as tf.GradSaveFunc));
  return op(h) as tf.Scalar;
}
