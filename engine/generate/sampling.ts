// Choosing the next token from a row of logits, with the usual processors in
// Hugging Face's order: repetition penalty → temperature → top-k → top-p.
// Temperature 0 means greedy (argmax). A seeded PRNG makes sampling repeatable.

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** 1 = off; > 1 discourages tokens already in the context (CTRL-style, as transformers). */
  repetitionPenalty: number;
}

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 0.7, topK: 40, topP: 0.95, repetitionPenalty: 1.1 };

/** mulberry32: small, fast, good enough for sampling; same seed → same tokens. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Token ids worth sampling, sorted by logit (best first): the top k when k > 0,
 * otherwise every token within 30·T of the best logit — anything further down
 * has probability below e^-30 of the best and cannot matter. Avoids sorting
 * the whole 32k vocabulary for every token.
 */
function candidates(logits: Float32Array, topK: number, temperature: number): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const floor = max - 30 * temperature;
  let ids: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) ids.push(i);
  ids.sort((a, b) => logits[b] - logits[a]);
  if (topK > 0 && topK < ids.length) ids = ids.slice(0, topK);
  return ids;
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Picks a token id. `logits` is modified in place. */
export function sampleToken(logits: Float32Array, context: readonly number[], opts: SamplingOptions, random: () => number): number {
  if (opts.repetitionPenalty !== 1) {
    for (const id of new Set(context)) {
      const s = logits[id];
      logits[id] = s < 0 ? s * opts.repetitionPenalty : s / opts.repetitionPenalty;
    }
  }
  if (opts.temperature <= 0) return argmax(logits);
  const order = candidates(logits, opts.topK, opts.temperature); // best first
  // Softmax over the candidates at this temperature.
  const max = logits[order[0]];
  const probs = order.map((id) => Math.exp((logits[id] - max) / opts.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  // Nucleus: the smallest prefix whose probability reaches top-p (at least one token).
  if (opts.topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < probs.length && cum < opts.topP * total) cum += probs[keep++];
    order.length = probs.length = Math.max(1, keep);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = random() * total;
  for (let i = 0; i < order.length; i++) {
    r -= probs[i];
    if (r <= 0) return order[i];
  }
  return order[order.length - 1];
}
