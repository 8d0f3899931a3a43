// Perplexity of a long text with a sliding window. The model reads at most
// `window` tokens at once; each window after the first moves `stride` tokens
// on and scores only those new tokens, so every token after the first is
// scored exactly once and sees at least window − stride tokens before it
// (the first window's tokens see what precedes them).
//
//   ids      0 1 2 3 4 5 6 7 8 9          window 5, stride 3
//   window1  [0 1 2 3 4]                  scores 1 2 3 4
//   window2        [3 4 5 6 7]            scores 5 6 7
//   window3            [5 6 7 8 9]        scores 8 9
//
// stride = window − 1 (the default) is lm-evaluation-harness's rolling
// log-likelihood: windows that overlap by one token. A smaller stride gives
// every token more context for more computation.
import { throwIfCancelled, type JobContext } from '../jobs/job';
import type { InferenceRuntime } from '../runtime/runtime';

export interface Window {
  /** The tokens the model reads: ids[begin, end). */
  begin: number;
  end: number;
  /** The first token this window scores (the ones before it were scored already or are context). */
  firstScored: number;
}

/** The windows covering `n` tokens. */
export function slidingWindows(n: number, window: number, stride: number): Window[] {
  if (!Number.isInteger(window) || window < 2) throw new Error(`window ${window}: needs at least 2 tokens`);
  if (!Number.isInteger(stride) || stride < 1 || stride >= window) throw new Error(`stride ${stride}: must be between 1 and the window − 1 (${window - 1})`);
  if (n < 2) throw new Error(`perplexity needs at least 2 tokens, got ${n}`);
  let end = Math.min(window, n);
  const windows: Window[] = [{ begin: 0, end, firstScored: 1 }];
  while (end < n) {
    const next = Math.min(end + stride, n);
    windows.push({ begin: next - window, end: next, firstScored: end });
    end = next;
  }
  return windows;
}

export interface PerplexityResult {
  /** Tokens scored (all but the first). */
  tokens: number;
  /** Total negative log-likelihood, nats. */
  nll: number;
  /** exp(nll / tokens) */
  ppl: number;
  windows: number;
}

/** Perplexity of `ids` read through `runtime` in sliding windows (progress in tokens scored). */
export async function slidingPerplexity(runtime: InferenceRuntime, ids: number[], window: number, stride: number, ctx: JobContext): Promise<PerplexityResult> {
  const windows = slidingWindows(ids.length, window, stride);
  let nll = 0;
  let tokens = 0;
  for (const w of windows) {
    throwIfCancelled(ctx.signal);
    // logprobs[i] is the score of ids[begin + i + 1].
    const { logprobs } = await runtime.score(ids.slice(w.begin, w.end));
    for (let t = w.firstScored; t < w.end; t++) nll -= logprobs[t - w.begin - 1];
    tokens += w.end - w.firstScored;
    ctx.progress({ phase: 'perplexity', done: tokens, total: ids.length - 1, unit: 'tokens', metrics: { ppl: Math.exp(nll / tokens) } });
  }
  return { tokens, nll, ppl: Math.exp(nll / tokens), windows: windows.length };
}
