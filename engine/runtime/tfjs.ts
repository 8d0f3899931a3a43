// The TensorFlow.js runtime: the model's own forward pass with its KVCache.
import * as tf from '@tensorflow/tfjs';
import { backendInfo, describeBackend } from '../backend/select';
import { KVCache } from '../model/kv-cache';
import type { MobileLLM } from '../model/model';
import { scoreIds, type TokenScores } from './score';
import type { InferenceRuntime, RuntimeCache } from './runtime';

export class TfjsRuntime implements InferenceRuntime {
  readonly name = 'tfjs';

  /** Wraps `model`; dispose() disposes it. */
  constructor(readonly model: MobileLLM) {}

  get config() {
    return this.model.config;
  }

  describe(): string {
    return `tfjs (${describeBackend(backendInfo())})`;
  }

  newCache(): KVCache {
    return this.model.newCache();
  }

  async nextLogits(input: number[], cache: RuntimeCache): Promise<Float32Array> {
    if (!(cache instanceof KVCache)) throw new Error('tfjs runtime: the cache was made by another runtime');
    // (Never return a typed array from tf.tidy: it would walk every element looking for tensors.)
    const ids = tf.tensor2d([input], [1, input.length], 'int32');
    const logits = this.model.forward(ids, { cache, lastOnly: true });
    const row = new Float32Array(logits.dataSync()); // own copy: sampling edits it in place
    ids.dispose();
    logits.dispose();
    return row;
  }

  async score(ids: number[]): Promise<TokenScores> {
    return scoreIds(this.model, ids);
  }

  async dispose(): Promise<void> {
    this.model.dispose();
  }
}
