// Before a run starts: how much memory a training step needs and how long it
// takes, so that a run that cannot fit is refused with a clear message
// instead of dying halfway (the wasm backend's heap is 32-bit: 4 GB at most,
// weights included).
//
// Memory, in float32 bytes, for N = batch × length tokens:
//   weights       P·4 (every parameter, frozen or not)
//   gradients     Pt·4 for the Pt trainable parameters (×2 when micro-batches are summed)
//   optimizer     Pt·8 (AdamW's two moments), and while it updates a parameter,
//                 OPT_TEMPS temporaries the size of the largest trainable one
//   activations   tfjs keeps every saved tensor *and* every intermediate
//                 gradient until a backward pass ends: measured at about
//                 ACT_FACTOR × the floats one layer's forward pass creates per
//                 token, f = 20·H + 5·I + 4·heads·T. "tape" holds that for all L
//                 effective layers; "recompute" for one layer plus each layer's
//                 input (H floats per token).
//   head          the fused loss works on chunks of CHUNK_LOGITS logits at a time
//                 (a few copies), keeps the softmax when it is small (loss.ts), plus
//                 the [H, V] head gradient when the head is trained.
// plus the runtime itself (Node, tfjs, the wasm module): RUNTIME bytes.
// Time: the step's matmul FLOPs (a forward pass F = 2·N·(matmul params) + the
// attention products, ×3 with weight gradients, ×2 without, +F when recomputing
// the layers, + the head's product when its softmax was not kept) over the
// backend's measured matmul rate.
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { countParams, effectiveDepth, type MobileLLMConfig } from '../model/config';
import type { GradMode } from './backprop';
import { LINEAR_KEYS, linearShapes, type LinearKey } from '../model/layout';
import { DEFAULT_LORA } from './config';
import { CHUNK_LOGITS, KEEP_PROBS } from './loss';
import { formatGigabytes } from '../protocol/sizes';

const ACT_FACTOR = 4;
const OPT_TEMPS = 7;
const RUNTIME = 200 * 2 ** 20;
/** The wasm backend's memory cannot grow past 4 GiB (32-bit addresses). */
export const WASM_HEAP_LIMIT = 4 * 1024 ** 3;
/** Allocator fragmentation and everything we do not count. */
const SLACK = 1.2;

export interface TrainShape {
  method: 'full' | 'lora';
  /** LoRA only; the fine-tuning configuration's defaults when not given. */
  loraRank?: number;
  loraTargets?: LinearKey[];
  batchSize: number;
  /** Micro-batches per step (default 1); above 1 the step's gradients are summed in a second copy. */
  gradAccum?: number;
  seqLen: number;
}

export interface MemoryEstimate {
  mode: GradMode;
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  total: number;
  trainableParams: number;
}

export function trainableParams(c: MobileLLMConfig, s: TrainShape): number {
  if (s.method === 'full') return countParams(c).total;
  const shapes = linearShapes(c);
  const r = s.loraRank ?? DEFAULT_LORA.rank;
  return c.numBlocks * (s.loraTargets ?? DEFAULT_LORA.targets).reduce((n, k) => n + r * (shapes[k][0] + shapes[k][1]), 0);
}

/** Elements of the largest trainable tensor: the embedding (full), one adapter matrix (LoRA). */
function largestTrainable(c: MobileLLMConfig, s: TrainShape): number {
  if (s.method === 'full') return c.vocabSize * c.hiddenSize;
  const shapes = linearShapes(c);
  return (s.loraRank ?? DEFAULT_LORA.rank) * Math.max(...(s.loraTargets ?? DEFAULT_LORA.targets).map((k) => Math.max(...shapes[k])));
}

export function estimateMemory(c: MobileLLMConfig, s: TrainShape, mode: GradMode): MemoryEstimate {
  const N = s.batchSize * s.seqLen;
  const L = effectiveDepth(c);
  const H = c.hiddenSize;
  const P = countParams(c).total;
  const Pt = trainableParams(c, s);
  const perTokenLayer = 20 * H + 5 * c.intermediateSize + 4 * c.numHeads * s.seqLen;
  const layers = mode === 'tape' ? L * ACT_FACTOR * perTokenLayer * N : ACT_FACTOR * perTokenLayer * N + (L + 1) * H * N;
  const headTrained = s.method === 'full';
  const logits = N * c.vocabSize;
  const head = 4 * Math.min(CHUNK_LOGITS, logits) + (logits <= KEEP_PROBS ? logits : 0) + 3 * N * H + (headTrained ? H * c.vocabSize : 0);
  const weights = 4 * P;
  const gradients = 4 * Pt * ((s.gradAccum ?? 1) > 1 ? 2 : 1);
  const optimizer = 4 * (2 * Pt + OPT_TEMPS * largestTrainable(c, s));
  const activations = 4 * (layers + head);
  const total = Math.round(SLACK * (weights + gradients + optimizer + activations) + RUNTIME);
  return { mode, weights, gradients, optimizer, activations, total, trainableParams: Pt };
}

/** Matmul FLOPs of one training step. */
export function stepFlops(c: MobileLLMConfig, s: TrainShape, mode: GradMode): number {
  const N = s.batchSize * s.seqLen;
  const shapes = linearShapes(c);
  const linear = LINEAR_KEYS.reduce((n, k) => n + shapes[k][0] * shapes[k][1], 0);
  const L = effectiveDepth(c);
  const forward = 2 * N * (L * linear + c.hiddenSize * c.vocabSize) + 4 * N * s.seqLen * c.numHeads * c.headDim * L;
  const backward = s.method === 'full' ? 2 * forward : forward;
  const headRecompute = N * c.vocabSize > KEEP_PROBS ? 2 * N * c.hiddenSize * c.vocabSize : 0;
  return forward + backward + headRecompute + (mode === 'recompute' ? forward : 0);
}

/** The backend's matmul rate in FLOP/s, from a few products of training-like shapes (about 0.1 s); the best of three rounds. */
export function measureMatmulRate(): number {
  const a = tf.randomNormal([512, 512]);
  const b = tf.randomNormal([512, 1024]);
  tf.matMul(a, b).dispose(); // warm up
  const runs = 4;
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) tf.matMul(a, b).dataSync();
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  tf.dispose([a, b]);
  return (runs * 2 * 512 * 512 * 1024) / best;
}

/** Rates measured in this process, by backend. */
const measuredRates = new Map<string, number>();

/**
 * The backend's matmul rate, measured once per process and backend: two
 * estimates of the same set-up give the same time (a fresh measurement on a
 * busy machine would differ each time).
 */
export function matmulRate(): number {
  const backend = tf.getBackend();
  let rate = measuredRates.get(backend);
  if (rate === undefined) {
    rate = measureMatmulRate();
    measuredRates.set(backend, rate);
  }
  return rate;
}

export interface TrainingEstimate {
  memory: MemoryEstimate;
  /** Bytes the run may use and why that much. */
  limit: number;
  limitReason: string;
  stepSeconds: number;
}

const gb = formatGigabytes;

/** Memory available to training on this backend: free RAM, and for wasm at most its 4 GB heap. */
export function memoryLimit(backend: string): { limit: number; reason: string } {
  const free = os.freemem();
  if (backend === 'wasm' && WASM_HEAP_LIMIT < free) return { limit: WASM_HEAP_LIMIT, reason: 'the wasm backend’s 4 GB heap limit' };
  return { limit: free, reason: `free memory (${gb(free)} of ${gb(os.totalmem())})` };
}

/**
 * Estimates a run and picks the gradient mode: 'tape' when it fits in half the
 * limit (it is the faster), else 'recompute'. Throws a one-line explanation
 * when even 'recompute' does not fit. `rate` is FLOP/s (measureMatmulRate()).
 */
export function planTraining(c: MobileLLMConfig, s: TrainShape, backend: string, rate: number, forced?: GradMode): TrainingEstimate {
  const { limit, reason } = memoryLimit(backend);
  const tape = estimateMemory(c, s, 'tape');
  const memory = forced ? estimateMemory(c, s, forced) : tape.total <= limit / 2 ? tape : estimateMemory(c, s, 'recompute');
  if (memory.total > limit) {
    throw new Error(
      `training needs about ${gb(memory.total)} (weights ${gb(memory.weights)}, gradients ${gb(memory.gradients)}, ` +
        `optimizer ${gb(memory.optimizer)}, activations ${gb(memory.activations)} for ${s.batchSize}×${s.seqLen} tokens) ` +
        `but only ${gb(limit)} is available (${reason}); lower --batch-size or --max-seq-len${s.method === 'full' ? ', or use --method lora' : ''}`,
    );
  }
  return { memory, limit, limitReason: reason, stepSeconds: stepFlops(c, s, memory.mode) / rate };
}
