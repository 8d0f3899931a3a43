// A job folder (mlw job export → any machine with PyTorch → mlw job import):
//
//   job.json            JobSpec: the run's configuration, what train.py needs of it, the step count
//   model/              the base model (config.json, model.safetensors, tokenizer files); a pre-training
//                       job exported with --init seed has no model.safetensors until train.py draws it
//   init/               LoRA only: the initial adapter (adapter_config.json, adapter_model.safetensors)
//   data/               train.safetensors, val.safetensors (ids I32, learn U8, offsets I64), plan.safetensors
//                       (plan I32 [steps, gradAccum, batchSize], −1 where a micro-batch is short), manifest.json
//   train.py            the training program (resources/job/train.py)
//   README.md, job.sbatch, sky.yaml   launch recipes
// and what the job writes:
//   metrics.jsonl       one line per step: step, loss, lr, grad_norm, tokens, tokens_per_s (, val_loss)
//   checkpoints/checkpoint-N/   our checkpoint layout (engine/train/checkpoints.ts)
//   machine.json        where it ran; done.json once the last step is done
import { z } from 'zod';
import { FinetuneConfig } from '../train/config';

export const JOB_SPEC = 'job.json';
export const JOB_FORMAT = 1;
export const METRICS_FILE = 'metrics.jsonl';
export const MACHINE_FILE = 'machine.json';
export const DONE_FILE = 'done.json';
export const CHECKPOINTS_DIR = 'checkpoints';

/** Where a pre-training job's initial weights come from: written into model/ here (the job trains exactly what mlw pretrain would), or drawn by train.py from the seed (the same distributions, other random numbers; a folder without weights, for models too large to ship). */
export const JOB_INITS = ['folder', 'seed'] as const;
export type JobInit = (typeof JOB_INITS)[number];

export const JobSpec = z.object({
  format: z.literal(JOB_FORMAT),
  /** Tells one job from another when it is imported again. */
  id: z.string().min(1),
  kind: z.enum(['finetune', 'pretrain']),
  createdAt: z.number(),
  method: z.enum(['lora', 'full']),
  lora: FinetuneConfig.shape.lora.unwrap().nullable(),
  /** The trainer's options; a pre-training job's epochs is unbounded (1e6: its steps end it), beyond fine-tuning's limit. */
  train: FinetuneConfig.shape.train.unwrap().extend({ epochs: z.number().int().min(1) }),
  totalSteps: z.number().int().positive(),
  stepsPerEpoch: z.number().int().positive(),
  /** The run's configuration as mlw finetune (FinetuneConfig) or mlw pretrain (PretrainConfig) would have stored it; paths are the exporting machine's. */
  config: z.record(z.string(), z.unknown()),
  /** A pre-training job exported with `--init seed`: model/ holds no weights; train.py draws them (JOB_INIT_DRAW). */
  init: z.object({ seed: z.number().int().min(0), std: z.number().positive(), residualStd: z.number().positive() }).optional(),
});
export type JobSpec = z.infer<typeof JobSpec>;

/** machine.json: where the job ran (its last launch). */
export const JobMachine = z.looseObject({
  hostname: z.string(),
  gpus: z.array(z.string()),
  torch: z.string(),
  worldSize: z.number().int().positive(),
});
export type JobMachine = z.infer<typeof JobMachine>;

/** A line of metrics.jsonl. */
export const JobMetricLine = z.looseObject({
  step: z.number().int().positive(),
  loss: z.number(),
  lr: z.number(),
  grad_norm: z.number(),
  tokens: z.number(),
  tokens_per_s: z.number(),
  val_loss: z.number().optional(),
  time: z.number().optional(),
});
export type JobMetricLine = z.infer<typeof JobMetricLine>;

/** What mlw job export (and the protocol's job.export) gives back. */
export const JobExportResult = z.object({
  dir: z.string(),
  id: z.string(),
  totalSteps: z.number().int(),
  trainExamples: z.number().int(),
  valExamples: z.number().int(),
  /** The command that runs it on one machine. */
  command: z.string(),
});
export type JobExportResult = z.infer<typeof JobExportResult>;

/** What mlw job import (and job.import) gives back. */
export const JobImportResult = z.object({
  runId: z.number().int().positive(),
  /** A run made by this import (false: an earlier import's run, extended). */
  created: z.boolean(),
  status: z.enum(['paused', 'completed']),
  lastStep: z.number().int().min(0),
  newSteps: z.number().int().min(0),
  newCheckpoints: z.array(z.number().int()),
  /** The finished model recorded in the store (a completed job). */
  modelId: z.number().int().positive().nullable(),
  machine: JobMachine.nullable(),
});
export type JobImportResult = z.infer<typeof JobImportResult>;
