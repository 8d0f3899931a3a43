// Which runtime trains a run, and its step runtime opened on a model folder:
// ONNX Runtime when it loads and can train the folder (float weights), else
// TensorFlow.js; an explicit choice is honoured or refused in one line.
import * as tf from '@tensorflow/tfjs';
import { readModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { loadOrt } from '../onnx/ort';
import type { RuntimeName } from '../runtime/runtime';
import { trainable, type GradMode } from './backprop';
import { readOptimizerArrays, readOptimizerState } from './checkpoints';
import type { LoraSettings, TrainRuntimeChoice } from './config';
import { applyLora, loadAdapter } from './lora';
import { OnnxSteps } from './onnx-steps';
import type { AdamWOptions } from './optimizer';
import { TfjsSteps } from './tfjs-steps';
import type { StepRuntime } from './trainer';

/** What ONNX Runtime cannot train (the folder, when given), or null. */
async function onnxUnavailable(baseModelDir: string | null): Promise<string | null> {
  const kind = baseModelDir === null ? 'float' : readModelFolder(baseModelDir).kind;
  if (kind !== 'float') return `${baseModelDir} is a ${kind} folder; training on ONNX Runtime needs float weights`;
  try {
    await loadOrt();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The runtime `choice` resolves to for a base model (null: one to be made, float), and why ONNX Runtime was skipped (auto). */
export async function resolveTrainRuntime(choice: TrainRuntimeChoice, baseModelDir: string | null): Promise<{ runtime: RuntimeName; skipped: string | null }> {
  if (choice === 'tfjs') return { runtime: 'tfjs', skipped: null };
  const why = await onnxUnavailable(baseModelDir);
  if (why && choice === 'onnx') throw new Error(`--runtime onnx: ${why}`);
  return why ? { runtime: 'tfjs', skipped: why } : { runtime: 'onnx', skipped: null };
}

export interface StepsRequest {
  runtime: RuntimeName;
  /** The base model folder. */
  baseModelDir: string;
  /** LoRA settings, or null for full fine-tuning. */
  lora: LoraSettings | null;
  /** The checkpoint folder to continue from (its weights, moments and step), or null. */
  from: { dir: string; step: number } | null;
  seed: number;
  adamw: AdamWOptions;
  /** How TensorFlow.js keeps activations. */
  gradMode: GradMode;
  /** Threads of ONNX Runtime (default: every core). */
  threads?: number;
}

/** Opens the step runtime of a run (dispose it when done). */
export async function openSteps(r: StepsRequest): Promise<StepRuntime> {
  if (r.runtime === 'onnx') {
    const resume = r.from ? { dir: r.from.dir, optimizer: readOptimizerArrays(r.from.dir), step: r.from.step } : undefined;
    return OnnxSteps.open({ baseModelDir: r.baseModelDir, lora: r.lora, resume, seed: r.seed, adamw: r.adamw, threads: r.threads });
  }
  const optimizer = r.from ? readOptimizerState(r.from.dir) : null;
  const resume = r.from && optimizer ? { optimizer, step: r.from.step } : undefined;
  try {
    if (!r.lora) {
      const { model } = loadModelFolder(readModelFolder(r.from?.dir ?? r.baseModelDir), { wrap: trainable });
      const vars = new Map([...model.namedParams()].map(([n, p]) => [n, p.tensor as tf.Variable]));
      return new TfjsSteps({ model, trainable: vars, adapters: null, baseModelDir: r.baseModelDir, gradMode: r.gradMode, adamw: r.adamw, resume });
    }
    const { model } = loadModelFolder(readModelFolder(r.baseModelDir));
    try {
      const adapters = r.from ? loadAdapter(model, r.from.dir, trainable) : applyLora(model, r.lora, { seed: r.seed }, trainable);
      const vars = new Map([...adapters.params()].map(([n, t]) => [n, t as tf.Variable]));
      return new TfjsSteps({ model, trainable: vars, adapters, baseModelDir: r.baseModelDir, gradMode: r.gradMode, adamw: r.adamw, resume });
    } catch (err) {
      model.dispose();
      throw err;
    }
  } finally {
    // The optimizer copies the moments into its own variables.
    if (optimizer) tf.dispose([...optimizer.values()]);
  }
}
