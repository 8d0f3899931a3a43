// Autoregressive generation with the KV cache: one prefill over the prompt,
// then one decode step per new token. Yields between tokens so that a caller
// can stream them and cancel (AbortSignal) mid-answer.
import * as tf from '@tensorflow/tfjs';
import type { MobileLLM } from '../model/model';
import type { KVCache } from '../model/kv-cache';
import { sampleToken, seededRandom, type SamplingOptions } from './sampling';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Stop when the model emits EOS (default true). */
  stopAtEos?: boolean;
  seed?: number;
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'length' | 'context' | 'cancelled';

export interface GeneratedToken {
  id: number;
  /** Milliseconds since generation started. */
  atMs: number;
}

export interface GenerationResult {
  ids: number[];
  finish: FinishReason;
  /** Time to the first new token (prefill + first sample), ms. */
  firstTokenMs: number;
  totalMs: number;
  promptTokens: number;
}

/** Runs `input` through the model after what the cache holds; the logits of the last position. */
function nextLogits(model: MobileLLM, input: number[], cache: KVCache): Float32Array {
  // (Never return a typed array from tf.tidy: it would walk every element looking for tensors.)
  const ids = tf.tensor2d([input], [1, input.length], 'int32');
  const logits = model.forward(ids, { cache, lastOnly: true });
  const row = new Float32Array(logits.dataSync()); // own copy: sampling edits it in place
  ids.dispose();
  logits.dispose();
  return row;
}

/**
 * Generates up to maxNewTokens after `promptIds`, calling onToken for each.
 * The returned promise resolves when generation stops for any reason.
 */
export async function generate(
  model: MobileLLM,
  promptIds: number[],
  opts: GenerateOptions,
  onToken?: (t: GeneratedToken) => void,
): Promise<GenerationResult> {
  if (promptIds.length === 0) throw new Error('generation needs at least one prompt token');
  const t0 = performance.now();
  const random = seededRandom(opts.seed ?? Date.now());
  const context = [...promptIds];
  const ids: number[] = [];
  const cache = model.newCache();
  const eos = model.config.eosTokenId;
  let finish: FinishReason = 'length';
  let firstTokenMs = 0;
  try {
    let input = promptIds;
    while (ids.length < opts.maxNewTokens) {
      if (opts.signal?.aborted) {
        finish = 'cancelled';
        break;
      }
      if (cache.length + input.length > model.config.maxPositions) {
        finish = 'context';
        break;
      }
      const row = nextLogits(model, input, cache);
      const id = sampleToken(row, context, opts, random);
      const atMs = performance.now() - t0;
      if (ids.length === 0) firstTokenMs = atMs;
      ids.push(id);
      context.push(id);
      onToken?.({ id, atMs });
      if (id === eos && opts.stopAtEos !== false) {
        finish = 'eos';
        break;
      }
      input = [id];
      // Let the event loop run (streaming, cancel requests) between tokens.
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    cache.dispose();
  }
  return { ids, finish, firstTokenMs, totalMs: performance.now() - t0, promptTokens: promptIds.length };
}
