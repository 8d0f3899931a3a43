// Decode latency of each sharing variant, measured on this machine with
// random-init weights (randomModel). The MobileLLM paper chose immediate
// block-wise repeat because "the shared weights stay in the cache", so that
// running a block twice costs little more than running two blocks — here we
// see how much it costs, and whether the order of repeats (immediate,
// repeat_all, reverse) matters on this backend.
//
// The variants (schedule-costs.ts: same storage, each strategy, same depth)
// share tensors: the shared variants run the very same N blocks; the same-depth
// model runs those N plus N·(repeats−1) fresh ones. All are alive at once and
// take turns, round after round, so that a slow spell of the machine hits
// them alike. One step = one token in, its logits read back; medians reported.
import * as tf from '@tensorflow/tfjs';
import { backendInfo } from '../backend/select';
import type { MobileLLMConfig } from '../model/config';
import { randomModel } from '../model/init';
import { MobileLLM } from '../model/model';
import { NO_SHARING } from '../model/sharing';
import { throwIfCancelled, type JobContext } from '../jobs/job';
import { sharingVariants } from './schedule-costs';
import { sig4, type Latency } from './schema';

export interface LatencyOptions {
  /** Times each block runs in the shared variants. */
  repeats: number;
  /** Physical blocks to measure with (default: the config's; fewer keeps it quick). */
  blocks?: number;
  /** Tokens prefilled before the timed steps (default 64). */
  contextTokens?: number;
  /** Timed decode steps per variant and round (default 32). */
  steps?: number;
  /** Rounds (default 3). */
  rounds?: number;
  seed?: number;
}

/** The q-quantile of sorted values, linearly interpolated. */
function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Prefills `prompt`, then times `steps` single-token decode steps (ms each). */
function timeDecode(model: MobileLLM, prompt: number[], steps: number): number[] {
  const cache = model.newCache();
  const times: number[] = [];
  try {
    const ids = tf.tensor2d([prompt], [1, prompt.length], 'int32');
    const first = model.forward(ids, { cache, lastOnly: true });
    first.dataSync();
    tf.dispose([ids, first]);
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const next = tf.tensor2d([[prompt[s % prompt.length]]], [1, 1], 'int32');
      const logits = model.forward(next, { cache, lastOnly: true }); // [1, 1, V]
      logits.dataSync();
      times.push(performance.now() - t0);
      tf.dispose([next, logits]);
    }
  } finally {
    cache.dispose();
  }
  return times;
}

/** Decode ms/token of every sharing variant of `c`'s shape (needs an initialized backend). */
export async function measureDecodeLatency(c: MobileLLMConfig, opts: LatencyOptions, ctx: JobContext): Promise<Latency> {
  const { repeats, contextTokens = 64, steps = 32, rounds = 3, seed = 0 } = opts;
  const N = opts.blocks ?? c.numBlocks;
  if (contextTokens + steps > c.maxPositions) throw new Error(`${contextTokens} + ${steps} tokens exceed the ${c.maxPositions}-token context`);
  const base: MobileLLMConfig = { ...c, numBlocks: N, sharing: NO_SHARING, torchDtype: 'float32' };
  const specs = sharingVariants(N, repeats);
  ctx.progress({ phase: 'building random-init models' });
  const stored = randomModel(base, seed);
  const extra = randomModel({ ...base, numBlocks: N * (repeats - 1) }, seed + 1);
  const models = specs.map(
    (s) =>
      new MobileLLM(
        { ...base, numBlocks: s.numBlocks, sharing: s.sharing },
        { ...stored.weights, blocks: s.variant === 'same-depth' ? [...stored.weights.blocks, ...extra.weights.blocks] : stored.weights.blocks },
      ),
  );
  const prompt = Array.from({ length: contextTokens }, (_, i) => 3 + ((i * 7919) % (c.vocabSize - 3)));
  const times: number[][] = specs.map(() => []);
  try {
    // Round −1 warms every variant up (kernels, caches, allocator) and is not kept.
    for (let round = -1; round < rounds; round++) {
      for (let j = 0; j < models.length; j++) {
        const i = (j + round + 1) % models.length; // each round starts with the next variant
        const t = timeDecode(models[i], prompt, round < 0 ? 2 : steps);
        if (round >= 0) times[i].push(...t);
        ctx.progress({ phase: 'timing decode steps', done: (round + 1) * models.length + j + 1, total: (rounds + 1) * models.length, unit: 'runs' });
        await new Promise((r) => setImmediate(r));
        throwIfCancelled(ctx.signal);
      }
    }
  } finally {
    for (const m of models) m.rope.dispose(); // the only tensors the variants own
    stored.dispose();
    extra.dispose();
  }
  const sorted = times.map((t) => [...t].sort((a, b) => a - b));
  const medians = sorted.map((t) => quantile(t, 0.5));
  const sameStorage = medians[0];
  const sameDepth = medians[medians.length - 1];
  const info = backendInfo();
  return {
    backend: info.name,
    threads: info.threads,
    physicalBlocks: N,
    contextTokens,
    steps,
    rounds,
    rows: specs.map((s, i) => ({
      variant: s.variant,
      sharing: s.sharing,
      physicalBlocks: s.numBlocks,
      effectiveDepth: models[i].numLayers,
      msPerToken: sig4(medians[i]),
      q1: sig4(quantile(sorted[i], 0.25)),
      q3: sig4(quantile(sorted[i], 0.75)),
      vsSameStorage: sig4(medians[i] / sameStorage),
      vsSameDepth: sig4(medians[i] / sameDepth),
      samples: sorted[i].length,
    })),
  };
}
