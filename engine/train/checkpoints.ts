// A training checkpoint is a folder that is also something usable on its own,
// laid out like Hugging Face Trainer's checkpoint-N:
//
//   full fine-tuning   config.json, model.safetensors (+ tokenizer files)   a model folder
//   LoRA               adapter_config.json, adapter_model.safetensors       a PEFT adapter
//   both               optimizer.safetensors   AdamW moments, "<param>.exp_avg(_sq)", our layout
//                      trainer_state.json      step, epoch, seed, best validation loss, …
//
// Everything needed to continue exactly: the weights, the optimizer state and
// the step, from which the data position and every random draw follow (rng.ts).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { MobileLLM } from '../model/model';
import { writeModelFiles } from '../io/checkpoint';
import { readSafetensors, writeSafetensors } from '../io/safetensors';
import { writeFileAtomic } from '../io/atomic';
import { float32Raw, toFloat32, type ArrayTensor, type RawTensor } from '../io/raw-tensor';
import { writeAdapterFiles, type LoraAdapters } from './lora';

export const TRAINER_STATE = 'trainer_state.json';
export const OPTIMIZER_STATE = 'optimizer.safetensors';

export const TrainerState = z.object({
  /** Optimizer steps done. */
  step: z.number().int().min(0),
  epoch: z.number().int().min(0),
  seed: z.number().int(),
  bestValLoss: z.number().nullable(),
  /** Training time so far (without pauses), for throughput and ETA. */
  elapsedMs: z.number().min(0),
  tokensSeen: z.number().int().min(0),
});
export type TrainerState = z.infer<typeof TrainerState>;

export interface CheckpointContents {
  model: MobileLLM;
  /** null for full fine-tuning. */
  adapters: LoraAdapters | null;
  /** The base model folder (tokenizer files, the adapter's base_model_name_or_path). */
  baseModelDir: string;
  optimizer: Map<string, tf.Tensor>;
  state: TrainerState;
}

/** Writes a checkpoint's files into `dir` (an existing, empty folder). */
export function writeCheckpointFiles(dir: string, c: CheckpointContents): void {
  if (c.adapters) writeAdapterFiles(c.adapters, dir, path.resolve(c.baseModelDir));
  else writeModelFiles(c.model, dir, 'float32', { tokenizerFrom: c.baseModelDir });
  writeTrainingState(
    dir,
    [...c.optimizer].map(([name, t]) => [name, { values: t.dataSync() as Float32Array, shape: [...t.shape] }]),
    c.state,
  );
}

/** The optimizer moments and trainer state of a checkpoint (what both runtimes write beside the weights). */
export function writeTrainingState(dir: string, moments: Iterable<[string, ArrayTensor]>, state: TrainerState): void {
  const raw: [string, RawTensor][] = [...moments].map(([name, t]) => [name, float32Raw(t.values, t.shape)]);
  writeSafetensors(path.join(dir, OPTIMIZER_STATE), raw, { step: String(state.step) });
  writeFileAtomic(path.join(dir, TRAINER_STATE), JSON.stringify(state, null, 2) + '\n');
}

export function readTrainerState(dir: string): TrainerState {
  const file = path.join(dir, TRAINER_STATE);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${TRAINER_STATE} (not a training checkpoint)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
  const parsed = TrainerState.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: invalid "${parsed.error.issues[0].path.join('.')}": ${parsed.error.issues[0].message}`);
  return parsed.data;
}

/** The AdamW moments of a checkpoint (the caller disposes them). */
export function readOptimizerState(dir: string): Map<string, tf.Tensor> {
  return new Map([...readOptimizerArrays(dir)].map(([name, t]) => [name, tf.tensor(t.values, t.shape)]));
}

/** The AdamW moments of a checkpoint as arrays. */
export function readOptimizerArrays(dir: string): Map<string, ArrayTensor> {
  const file = path.join(dir, OPTIMIZER_STATE);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${OPTIMIZER_STATE}`);
  const out = new Map<string, ArrayTensor>();
  for (const [name, raw] of readSafetensors(file).tensors) out.set(name, { values: toFloat32(raw, `${file}: ${name}`), shape: raw.shape });
  return out;
}
