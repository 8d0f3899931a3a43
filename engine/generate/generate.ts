// Autoregressive generation with the KV cache: one prefill over the prompt,
// then one decode step per new token. Yields between tokens so that a caller
// can stream them and cancel (AbortSignal) mid-answer. The one loop for every
// runtime: it asks the runtime for the next logits and samples here.
import { MobileLLM } from '../model/model';
import type { InferenceRuntime } from '../runtime/runtime';
import { TfjsRuntime } from '../runtime/tfjs';
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

/**
 * Generates up to maxNewTokens after `promptIds`, calling onToken for each.
 * The returned promise resolves when generation stops for any reason.
 * A MobileLLM runs on TensorFlow.js (and is not disposed).
 */
export async function generate(
  source: MobileLLM | InferenceRuntime,
  promptIds: number[],
  opts: GenerateOptions,
  onToken?: (t: GeneratedToken) => void,
): Promise<GenerationResult> {
  if (promptIds.length === 0) throw new Error('generation needs at least one prompt token');
  const t0 = performance.now();
  const random = seededRandom(opts.seed ?? Date.now());
  const context = [...promptIds];
  const ids: number[] = [];
  const runtime = source instanceof MobileLLM ? new TfjsRuntime(source) : source;
  const cache = runtime.newCache();
  const { eosTokenId: eos, maxPositions } = runtime.config;
  let finish: FinishReason = 'length';
  let firstTokenMs = 0;
  try {
    let input = promptIds;
    while (ids.length < opts.maxNewTokens) {
      if (opts.signal?.aborted) {
        finish = 'cancelled';
        break;
      }
      if (cache.length + input.length > maxPositions) {
        finish = 'context';
        break;
      }
      const row = await runtime.nextLogits(input, cache);
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
