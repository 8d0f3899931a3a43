// From tokenized examples to micro-batches. The order of the data is a pure
// function of (seed, epoch): optimizer step s always sees the same examples,
// so a run resumed at step s needs nothing but s to continue where it was.
//
//   epoch e        a seeded permutation of the examples
//   micro-batch    batchSize consecutive examples of it, right-padded
//   step           gradAccum consecutive micro-batches (the last one of an epoch may be short)
import * as tf from '@tensorflow/tfjs';
import type { MicroBatch } from './backprop';
import { RNG, permutation, rngFor } from './rng';

export interface TokenizedExample {
  ids: number[];
  /** 1 where the token is learned (its prediction from the tokens before counts in the loss), per token. */
  learn: Uint8Array;
}

/** Tokens whose prediction counts in the loss (a row's first token is never predicted). */
export function learnedTokens(rows: readonly TokenizedExample[]): number {
  let n = 0;
  for (const r of rows) for (let t = 1; t < r.learn.length; t++) n += r.learn[t];
  return n;
}

/**
 * Right-pads the rows to the longest with `padId` and builds the next-token
 * targets: position t of a row predicts token t+1, with weight learn[t+1]
 * (padding and each row's last position weigh 0). Causal attention means the
 * padding after a row's end cannot change its loss, so no attention mask is needed.
 */
export function microBatch(rows: readonly TokenizedExample[], denom: number, padId = 0): MicroBatch {
  const { B, T, ids, targets, weights } = batchArrays(rows, padId);
  return {
    ids: tf.tensor2d(ids, [B, T], 'int32'),
    targets: tf.tensor1d(targets, 'int32'),
    weights: tf.tensor1d(weights),
    denom: Math.max(1, denom),
  };
}

/** microBatch's ids [B·T], targets [B·T] and weights [B·T] as arrays. */
export function batchArrays(
  rows: readonly TokenizedExample[],
  padId = 0,
): { B: number; T: number; ids: Int32Array; targets: Int32Array; weights: Float32Array } {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.ids.length));
  const ids = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  rows.forEach((r, b) => {
    ids.set(r.ids, b * T);
    for (let t = 0; t + 1 < r.ids.length; t++) {
      targets[b * T + t] = r.ids[t + 1];
      weights[b * T + t] = r.learn[t + 1];
    }
  });
  return { B, T, ids, targets, weights };
}

export function disposeMicroBatch(b: MicroBatch): void {
  tf.dispose([b.ids, b.targets, b.weights]);
}

/** Which examples each optimizer step uses. */
export class BatchPlan {
  readonly microPerEpoch: number;
  readonly stepsPerEpoch: number;
  private cached: { epoch: number; order: number[] } | null = null;

  constructor(
    readonly numExamples: number,
    readonly batchSize: number,
    readonly gradAccum: number,
    readonly seed: number,
  ) {
    if (numExamples < 1) throw new Error('no training examples');
    this.microPerEpoch = Math.ceil(numExamples / batchSize);
    this.stepsPerEpoch = Math.ceil(this.microPerEpoch / gradAccum);
  }

  private order(epoch: number): number[] {
    if (this.cached?.epoch !== epoch) {
      this.cached = { epoch, order: permutation(this.numExamples, rngFor(this.seed, RNG.shuffle, epoch)) };
    }
    return this.cached.order;
  }

  /** Epoch of optimizer step `step` (0-based). */
  epochOf(step: number): number {
    return Math.floor(step / this.stepsPerEpoch);
  }

  /** The example indices of each micro-batch of optimizer step `step`. */
  step(step: number): number[][] {
    const epoch = this.epochOf(step);
    const order = this.order(epoch);
    const first = (step % this.stepsPerEpoch) * this.gradAccum;
    const micros: number[][] = [];
    for (let m = first; m < Math.min(first + this.gradAccum, this.microPerEpoch); m++) {
      micros.push(order.slice(m * this.batchSize, (m + 1) * this.batchSize));
    }
    return micros;
  }
}
