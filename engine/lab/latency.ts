// The measured decode latency of a lab variant's trained model, on the
// runtime the chat uses (openRuntime: ONNX Runtime, TensorFlow.js only where it
// does not load): ms per token of one token after a fixed-length cache
// (runtime/timing.ts), median of the timed steps after warm-up. Measured once
// per trained run and kept in latency.json beside evaluations.json, keyed like
// it ("<variant>-seed<N>") and tied to the run id, so that a retrained variant
// is measured again. Sharing shows here as it runs: a shared block costs its
// compute every time it runs, whatever it saves in storage.
import { z } from 'zod';
import { openRuntime } from '../folder/inference';
import { readModelFolder } from '../folder/kind';
import { RUNTIME_NAMES, type RuntimeName } from '../runtime/runtime';
import { summarize, timePrefillAndDecode, timingPrompt } from '../runtime/timing';

export const LATENCY_FILE = 'latency.json';

/** Cached tokens before each timed step (or fewer, for a model with a shorter context). */
const CONTEXT_TOKENS = 64;
const STEPS = 32;
const WARMUP = 2;

export const MeasuredLatency = z.object({
  runId: z.number().int().positive(),
  /** Median ms of one decode step. */
  decodeMs: z.number().positive(),
  runtime: z.enum(RUNTIME_NAMES),
  /** The runtime in words (runtime.describe()). */
  runtimeDescription: z.string(),
  contextTokens: z.number().int().positive(),
});
export type MeasuredLatency = z.infer<typeof MeasuredLatency>;

/** Decode ms/token of the model folder at `modelDir` on the chat's runtime (`runtime` forces one). */
export async function modelDecodeLatency(modelDir: string, runId: number, runtime?: RuntimeName): Promise<MeasuredLatency> {
  const { runtime: rt } = await openRuntime(readModelFolder(modelDir), { runtime });
  try {
    const contextTokens = Math.min(CONTEXT_TOKENS, rt.config.maxPositions - 1);
    const t = await timePrefillAndDecode(rt, timingPrompt(contextTokens, rt.config.vocabSize), { prefills: 1, steps: STEPS, warmup: WARMUP });
    return { runId, decodeMs: summarize(t.decode).median, runtime: rt.name, runtimeDescription: rt.describe(), contextTokens };
  } finally {
    await rt.dispose();
  }
}
