// Log-probability of each token given the ones before it.
import * as tf from '@tensorflow/tfjs';
import type { MobileLLM } from '../model/model';

export interface TokenScores {
  ids: number[];
  /** logprobs[i] = log p(ids[i+1] | ids[0..i]); n−1 values. */
  logprobs: number[];
  /** Total negative log-likelihood (sum over the n−1 predictions). */
  nll: number;
  /** exp(mean NLL). */
  ppl: number;
}

/** Log-softmax of the target of each row: logits [N, V], targets [N] → [N]. */
export function targetLogprobs(logits: tf.Tensor2D, targets: number[]): Float32Array {
  const out = tf.tidy(() => {
    const logp = tf.sub(logits, tf.logSumExp(logits, 1, true));
    const idx = tf.tensor1d(
      targets.map((t, i) => i * logits.shape[1] + t),
      'int32',
    );
    return tf.gather(logp.reshape([-1]), idx);
  });
  const values = out.dataSync() as Float32Array;
  out.dispose();
  return values;
}

/** Throws unless `ids` can be scored in one pass of a model with this context. */
export function checkScorable(ids: number[], maxPositions: number): void {
  if (ids.length < 2) throw new Error(`scoring needs at least 2 tokens, got ${ids.length}`);
  if (ids.length > maxPositions) {
    throw new Error(`${ids.length} tokens exceed the model's ${maxPositions}-token context`);
  }
}

function tokenScores(ids: number[], logprobs: number[]): TokenScores {
  const nll = -logprobs.reduce((a, b) => a + b, 0);
  return { ids, logprobs, nll, ppl: Math.exp(nll / logprobs.length) };
}

/** Scores `ids` with one forward pass (ids must fit the model's context). */
export function scoreIds(model: MobileLLM, ids: number[]): TokenScores {
  checkScorable(ids, model.config.maxPositions);
  const input = tf.tensor2d([ids], [1, ids.length], 'int32');
  const logits = model.forward(input);
  input.dispose();
  const T = ids.length;
  const rows = tf.tidy(() => tf.slice(logits, [0, 0, 0], [1, T - 1, logits.shape[2]]).reshape([T - 1, logits.shape[2]]) as tf.Tensor2D);
  logits.dispose();
  const lp = Array.from(targetLogprobs(rows, ids.slice(1)));
  rows.dispose();
  return tokenScores(ids, lp);
}

/**
 * Scores `ids` from logits already computed elsewhere (another runtime):
 * `logits` holds at least the rows of positions 0 … n−2, [rows, V] row-major.
 * The log-softmax is accumulated in float64.
 */
export function scoresFromLogits(ids: number[], logits: Float32Array, V: number): TokenScores {
  const lp: number[] = [];
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max);
    lp.push(row[ids[t + 1]] - max - Math.log(sum));
  }
  return tokenScores(ids, lp);
}
