// The fine-tuning configuration: one schema with its bounds and defaults.
// `mlw finetune` takes its flags from it, the protocol's fine-tuning requests
// are it (a model id instead of a folder), the wizard starts from its defaults,
// a run stores it as its config and validates it again on resume. Also what a
// run gives back.
//
// Imported by the protocol, hence by the renderer: zod and Node-free modules only.
import { z } from 'zod';
import { LINEAR_KEYS } from '../model/layout';
import { DECAYS } from './schedule';
import { RUNTIME_NAMES, type RuntimeName } from '../runtime/runtime';

const int = z.number().int();

/** Hyper-parameters of the training loop (engine/train/trainer.ts). */
export const TrainOptions = z.object({
  /** Passes over the training data; ignored when maxSteps is set. */
  epochs: int.min(1).max(100).default(1),
  maxSteps: int.positive().optional(),
  lr: z.number().positive().max(1).default(2e-4),
  warmupSteps: int.min(0).default(0),
  decay: z.enum(DECAYS).default('cosine'),
  /** Cosine floor as a fraction of lr. */
  minLrRatio: z.number().min(0).max(1).default(0),
  batchSize: int.min(1).max(256).default(4),
  gradAccum: int.min(1).max(256).default(1),
  adamw: z
    .object({
      beta1: z.number().min(0).max(1).default(0.9),
      beta2: z.number().min(0).max(1).default(0.999),
      eps: z.number().positive().default(1e-8),
      weightDecay: z.number().min(0).default(0.01),
    })
    .prefault({}),
  /** 0 turns clipping off. */
  maxGradNorm: z.number().min(0).default(1),
  seed: int.default(0),
  /** Validation every N steps (0: only at the end). */
  evalEvery: int.min(0).default(50),
  /** Checkpoint every N steps (0: off) … */
  saveEvery: int.min(0).default(100),
  /** … or every M minutes (0: off); and always at the end and on pause. */
  saveEveryMinutes: z.number().min(0).default(10),
  /** Checkpoints kept besides the best one. */
  keepLast: int.positive().default(2),
});
export type TrainOptions = z.infer<typeof TrainOptions>;

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = TrainOptions.parse({});

/** The adapters of a LoRA run (engine/train/lora.ts). */
export const LoraSettings = z.object({
  rank: int.min(1).max(256).default(8),
  alpha: z.number().positive().default(16),
  /** Probability of zeroing an input of the update path (training only); below 1: at 1 every input would be dropped. */
  dropout: z.number().min(0).max(0.9).default(0),
  targets: z.array(z.enum(LINEAR_KEYS)).min(1).default(['q', 'v']),
  /** Rank-stabilized scaling α/√r instead of α/r. */
  rslora: z.boolean().default(false),
});
export type LoraSettings = z.infer<typeof LoraSettings>;

export const DEFAULT_LORA: LoraSettings = LoraSettings.parse({});

export const TRAIN_RUNTIME_CHOICES = ['auto', ...RUNTIME_NAMES] as const;
export const TrainRuntimeChoice = z.enum(TRAIN_RUNTIME_CHOICES).default('auto');
export type TrainRuntimeChoice = z.infer<typeof TrainRuntimeChoice>;

/**
 * The runtime a training run's stored config records; runs from before the
 * engine recorded the one it resolved to (no runtime, or 'auto') were all
 * trained on TensorFlow.js.
 */
export function recordedRuntime(config: Record<string, unknown>): RuntimeName {
  const recorded = z.enum(RUNTIME_NAMES).safeParse(config.runtime);
  return recorded.success ? recorded.data : 'tfjs';
}

/** Everything a run needs, as stored in runs.config (and read back on resume). */
export const FinetuneConfig = z.object({
  /** Base model folder. */
  model: z.string().min(1),
  data: z.string().min(1),
  /** A separate validation file; otherwise valFraction of `data` is held out. */
  val: z.string().min(1).nullable().default(null),
  valFraction: z.number().min(0).max(0.5).default(0.1),
  method: z.enum(['lora', 'full']).default('lora'),
  lora: LoraSettings.prefault({}),
  maxSeqLen: int.min(16).max(8192).default(512),
  lossOn: z.enum(['answers', 'all']).default('answers'),
  packing: z.boolean().default(false),
  /** tape (fast) or recompute (less memory); auto: chosen by the memory estimate. */
  gradMode: z.enum(['auto', 'tape', 'recompute']).default('auto'),
  /** What computes the training steps; auto: ONNX Runtime when it loads, else TensorFlow.js. A run stores the one it resolved to. */
  runtime: TrainRuntimeChoice,
  train: TrainOptions.prefault({}),
});
export type FinetuneConfig = z.infer<typeof FinetuneConfig>;
export type FinetuneInput = z.input<typeof FinetuneConfig>;

export const TRAIN_STATUSES = ['completed', 'paused', 'cancelled'] as const;
export type TrainStatus = (typeof TRAIN_STATUSES)[number];

/** How a run ended (or paused). */
export const FinetuneOutcome = z.object({
  runId: int.positive(),
  status: z.enum(TRAIN_STATUSES),
  step: int.min(0),
  /** The newest checkpoint folder (a model folder or a PEFT adapter), if any. */
  checkpoint: z.string().nullable(),
  /** The finished model recorded in the store (completed runs). */
  modelId: int.positive().nullable(),
});
export type FinetuneOutcome = z.infer<typeof FinetuneOutcome>;
