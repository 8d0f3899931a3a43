// Timing an inference runtime the way generation uses it: prefill (a prompt
// of T tokens into an empty cache, its last logits read back) and decode (one
// token after a cache of a fixed length S, its logits read back). A decode
// step is timed at the same S every time — the cache is cut back to S before
// each step — so that a step's cost does not grow with the step number and
// every sample measures the same work. Used by the inspector's latency
// (engine/inspect/latency.ts), the lab's per-variant latency and the bench.
import type { InferenceRuntime, RuntimeCache } from './runtime';

/** Median and quartiles of repeated timings, ms. */
export interface TimingSummary {
  median: number;
  q1: number;
  q3: number;
  samples: number;
}

/** The q-quantile of sorted values, linearly interpolated. */
export function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function summarize(times: number[]): TimingSummary {
  if (!times.length) throw new Error('no timings to summarize');
  const s = [...times].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), q1: quantile(s, 0.25), q3: quantile(s, 0.75), samples: s.length };
}

/** A deterministic prompt of `length` ids in 3…vocabSize−1 (no special tokens). */
export function timingPrompt(length: number, vocabSize: number): number[] {
  return Array.from({ length }, (_, i) => 3 + ((i * 7919) % (vocabSize - 3)));
}

export interface TimedSteps {
  /** ms of each timed prefill of the prompt. */
  prefill: number[];
  /** ms of each timed decode step after `prompt.length` cached tokens. */
  decode: number[];
}

/**
 * Prefills `prompt` `prefills` times (each into a fresh cache), then times
 * `steps` single-token decode steps after the last prefill's cache. `warmup`
 * untimed prefill + decode steps come first (a fresh session allocates its
 * arena and picks kernels on its first runs).
 */
export async function timePrefillAndDecode(
  runtime: InferenceRuntime,
  prompt: number[],
  opts: { prefills: number; steps: number; warmup: number },
): Promise<TimedSteps> {
  const S = prompt.length;
  if (S + 1 > runtime.config.maxPositions) throw new Error(`a ${S}-token context and one more token exceed the ${runtime.config.maxPositions}-token context`);
  if (opts.prefills < 1) throw new Error('at least one prefill is timed (it makes the decode steps\u2019 cache)');
  const out: TimedSteps = { prefill: [], decode: [] };
  for (let w = 0; w < opts.warmup; w++) {
    const cache = runtime.newCache();
    await runtime.nextLogits(prompt, cache);
    await runtime.nextLogits([prompt[w % S]], cache);
    cache.dispose();
  }
  let cache: RuntimeCache | null = null;
  try {
    for (let p = 0; p < opts.prefills; p++) {
      cache?.dispose();
      cache = runtime.newCache();
      const t0 = performance.now();
      await runtime.nextLogits(prompt, cache);
      out.prefill.push(performance.now() - t0);
    }
    for (let s = 0; s < opts.steps; s++) {
      cache!.truncate(S); // back to S cached tokens, untimed (TensorFlow.js slices its cache)
      const t0 = performance.now();
      await runtime.nextLogits([prompt[s % S]], cache!);
      out.decode.push(performance.now() - t0);
    }
  } finally {
    cache?.dispose();
  }
  return out;
}

/**
 * timePrefillAndDecode for several runtimes at once, taking turns run by run
 * (A B C, then B C A, …): on a machine that others share, a slow spell hits
 * every runtime alike, so their ratios hold even when their times do not.
 * Every runtime stays open (and holds its weights) throughout.
 */
export async function timeInterleaved(
  runtimes: InferenceRuntime[],
  prompt: number[],
  opts: { prefills: number; steps: number; warmup: number },
): Promise<TimedSteps[]> {
  const S = prompt.length;
  const n = runtimes.length;
  if (opts.prefills < 1) throw new Error('at least one prefill is timed (it makes the decode steps\u2019 cache)');
  for (const rt of runtimes) {
    if (S + 1 > rt.config.maxPositions) throw new Error(`a ${S}-token context and one more token exceed the ${rt.config.maxPositions}-token context`);
    for (let w = 0; w < opts.warmup; w++) {
      const cache = rt.newCache();
      await rt.nextLogits(prompt, cache);
      await rt.nextLogits([prompt[w % S]], cache);
      cache.dispose();
    }
  }
  const out: TimedSteps[] = runtimes.map(() => ({ prefill: [], decode: [] }));
  const caches: (RuntimeCache | null)[] = runtimes.map(() => null);
  const inTurn = (k: number) => Array.from({ length: n }, (_, j) => (j + k) % n);
  try {
    for (let p = 0; p < opts.prefills; p++) {
      for (const i of inTurn(p)) {
        caches[i]?.dispose();
        caches[i] = runtimes[i].newCache();
        const t0 = performance.now();
        await runtimes[i].nextLogits(prompt, caches[i]!);
        out[i].prefill.push(performance.now() - t0);
      }
    }
    for (let s = 0; s < opts.steps; s++) {
      for (const i of inTurn(s)) {
        caches[i]!.truncate(S);
        const t0 = performance.now();
        await runtimes[i].nextLogits([prompt[s % S]], caches[i]!);
        out[i].decode.push(performance.now() - t0);
      }
    }
  } finally {
    for (const c of caches) c?.dispose();
  }
  return out;
}
