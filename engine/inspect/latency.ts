// Decode and prefill latency of each sharing variant, measured on this
// machine with random-init weights (randomModel), on the runtime the chat
// uses: ONNX Runtime, TensorFlow.js only where ONNX Runtime does not load (or
// when forced); the report names the one that measured. The MobileLLM paper
// chose immediate block-wise repeat because "the shared weights stay in the
// cache", so that running a block twice costs little more than running two
// blocks — here we see how much it costs, and whether the order of repeats
// (immediate, repeat_all, reverse) matters on this runtime.
//
// The variants (schedule-costs.ts: same storage, each strategy, same depth)
// share tensors: the shared variants run the very same N blocks (one set of
// initializers in their ONNX graph, read by every layer that runs it); the
// same-depth model runs those N plus N·(repeats−1) fresh ones. Where memory
// allows, every variant is open at once and they take turns run by run
// (runtime/timing.ts: timeInterleaved), so that a slow spell of this shared
// machine hits them alike; otherwise (large shapes on ONNX Runtime, whose
// sessions each hold their weights) each variant's session is opened for its
// turn and released after it, the variants taking turns round after round,
// every turn starting with untimed warm-up runs. Either way each variant gets
// `prefills` × `rounds` timed prefills of the context and `steps` × `rounds`
// decode steps (one token after the context); medians and quartiles.
import os from 'node:os';
import { backendInfo } from '../backend/select';
import { countParams, type MobileLLMConfig } from '../model/config';
import { randomModel } from '../model/init';
import { MobileLLM } from '../model/model';
import { NO_SHARING, sharingSchedule } from '../model/sharing';
import { exportMobileLLM } from '../onnx/mobilellm';
import { OnnxRuntime } from '../runtime/onnx';
import type { InferenceRuntime, RuntimeName } from '../runtime/runtime';
import { startRuntime } from '../runtime/select';
import { TfjsRuntime } from '../runtime/tfjs';
import { summarize, timeInterleaved, timePrefillAndDecode, timingPrompt, type TimingSummary } from '../runtime/timing';
import { throwIfCancelled, type JobContext } from '../jobs/job';
import { sharingVariants, type VariantSpec } from './schedule-costs';
import { sig4, type Latency, type LatencyTiming } from './schema';

export interface LatencyOptions {
  /** Times each block runs in the shared variants. */
  repeats: number;
  /** Physical blocks to measure with (default: the config's; fewer keeps it quick). */
  blocks?: number;
  /** Tokens prefilled, and cached before every timed decode step (default 64). */
  contextTokens?: number;
  /** Timed decode steps per variant and round (default 32). */
  steps?: number;
  /** Timed prefills per variant and round (default 3). */
  prefills?: number;
  /** Rounds (default 3). */
  rounds?: number;
  seed?: number;
  /** Forced runtime (default: MLW_RUNTIME, else ONNX Runtime where it loads). */
  runtime?: RuntimeName;
  /** Every variant open at once, taking turns run by run (default: where memory allows); false: one session at a time. */
  together?: boolean;
}

/** Untimed prefill + decode runs at the start of every turn. */
const WARMUP = 2;

/**
 * Bytes of float32 weights ONNX Runtime may hold with every variant open, at
 * worst: each effective layer's own copy (kernels prepack the weights they
 * read, some into copies of their own: engine/onnx/session.ts).
 */
function onnxBytesAllOpen(base: MobileLLMConfig, specs: VariantSpec[]): number {
  return specs.reduce((sum, s) => sum + 4 * countParams({ ...base, numBlocks: sharingSchedule(s.numBlocks, s.sharing).length }).total, 0);
}

/** Opens `model` on the runtime named (or the fastest that starts); its weights stay the model's. */
async function openVariant(model: MobileLLM, runtime: RuntimeName | undefined): Promise<{ runtime: InferenceRuntime; skipped: string[] }> {
  return startRuntime({ onnx: () => OnnxRuntime.fromGraph(exportMobileLLM(model)), tfjs: () => new TfjsRuntime(model) }, { runtime });
}

/** Frees what opening made: an ONNX session; a TensorFlow.js runtime holds only the shared weights (freed by the caller). */
async function closeVariant(runtime: InferenceRuntime): Promise<void> {
  if (runtime instanceof OnnxRuntime) await runtime.dispose();
}

function timing(t: TimingSummary, sameStorage: number, sameDepth: number): LatencyTiming {
  return {
    ms: sig4(t.median),
    q1: sig4(t.q1),
    q3: sig4(t.q3),
    vsSameStorage: sig4(t.median / sameStorage),
    vsSameDepth: sig4(t.median / sameDepth),
    samples: t.samples,
  };
}

/** Decode and prefill ms of every sharing variant of `c`'s shape (needs an initialized TensorFlow.js backend: the random weights are built there). */
export async function measureDecodeLatency(c: MobileLLMConfig, opts: LatencyOptions, ctx: JobContext): Promise<Latency> {
  const { repeats, contextTokens = 64, steps = 32, prefills = 3, rounds = 3, seed = 0 } = opts;
  const N = opts.blocks ?? c.numBlocks;
  if (![steps, prefills, rounds].every((n) => Number.isInteger(n) && n >= 1)) throw new Error('steps, prefills and rounds must be positive integers');
  if (contextTokens + 1 > c.maxPositions) throw new Error(`a ${contextTokens}-token context and one more token exceed the ${c.maxPositions}-token context`);
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
  const prompt = timingPrompt(contextTokens, c.vocabSize);
  const prefill: number[][] = specs.map(() => []);
  const decode: number[][] = specs.map(() => []);
  // Chosen when the first variant opens, then forced, so that every variant is timed on the same runtime.
  let chosen: { name: RuntimeName; description: string; threads: number; skipped: string[] } | null = null;
  const open = async (i: number): Promise<InferenceRuntime> => {
    const { runtime, skipped } = await openVariant(models[i], chosen?.name ?? opts.runtime);
    chosen ??= {
      name: runtime.name,
      description: runtime.describe(),
      threads: runtime instanceof OnnxRuntime ? runtime.session.threads : backendInfo().threads,
      skipped,
    };
    return runtime;
  };
  const progress = (done: number, total: number, unit: string) =>
    ctx.progress({ phase: `timing prefill and decode${chosen ? ` on ${chosen.description}` : ''}`, done, total, unit });
  let together: boolean;
  try {
    progress(0, models.length, 'variants opened');
    const first = await open(0);
    // TensorFlow.js variants share their weights; ONNX sessions each hold their own.
    together = opts.together ?? (first.name === 'tfjs' || onnxBytesAllOpen(base, specs) < os.freemem() / 2);
    if (together) {
      const runtimes = [first];
      try {
        for (let i = 1; i < models.length; i++) {
          progress(i, models.length, 'variants opened');
          runtimes.push(await open(i));
        }
        progress(models.length, models.length, 'variants opened');
        const t = await timeInterleaved(runtimes, prompt, { prefills: prefills * rounds, steps: steps * rounds, warmup: WARMUP });
        t.forEach((x, i) => {
          prefill[i].push(...x.prefill);
          decode[i].push(...x.decode);
        });
      } finally {
        for (const r of runtimes) await closeVariant(r);
      }
    } else {
      await closeVariant(first);
      for (let round = 0; round < rounds; round++) {
        for (let j = 0; j < models.length; j++) {
          const i = (j + round) % models.length; // each round starts with the next variant
          progress(round * models.length + j, rounds * models.length, 'turns');
          const runtime = await open(i);
          try {
            const t = await timePrefillAndDecode(runtime, prompt, { prefills, steps, warmup: WARMUP });
            prefill[i].push(...t.prefill);
            decode[i].push(...t.decode);
          } finally {
            await closeVariant(runtime);
          }
          await new Promise((r) => setImmediate(r));
          throwIfCancelled(ctx.signal);
        }
      }
    }
  } finally {
    for (const m of models) m.rope.dispose(); // the only tensors the variants own
    stored.dispose();
    extra.dispose();
  }
  const p = prefill.map(summarize);
  const d = decode.map(summarize);
  const last = specs.length - 1;
  return {
    runtime: chosen!.name,
    runtimeDescription: chosen!.description,
    skipped: chosen!.skipped,
    threads: chosen!.threads,
    physicalBlocks: N,
    contextTokens,
    steps,
    prefills,
    rounds,
    together,
    rows: specs.map((s, i) => ({
      variant: s.variant,
      sharing: s.sharing,
      physicalBlocks: s.numBlocks,
      effectiveDepth: models[i].numLayers,
      decode: timing(d[i], d[0].median, d[last].median),
      prefill: timing(p[i], p[0].median, p[last].median),
    })),
  };
}
