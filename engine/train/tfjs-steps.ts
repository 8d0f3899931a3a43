// Training steps on TensorFlow.js (the reference runtime): the trained tensors
// are tf.Variables of the model (every weight, or the LoRA adapters), the
// gradients come from backprop.ts (tape or recompute), AdamW is optimizer.ts's.
import * as tf from '@tensorflow/tfjs';
import type { MobileLLM } from '../model/model';
import { evalLoss, lossAndGrads, type GradMode } from './backprop';
import { disposeMicroBatch, microBatch, type TokenizedExample } from './batching';
import { writeCheckpointFiles, type TrainerState } from './checkpoints';
import type { LoraAdapters } from './lora';
import { AdamW, clipGlobalNorm, type AdamWOptions } from './optimizer';
import type { StepRuntime } from './trainer';

export interface TfjsStepsInput {
  model: MobileLLM;
  /** The trained variables by name (HF names for full fine-tuning, PEFT names for adapters). */
  trainable: Map<string, tf.Variable>;
  adapters: LoraAdapters | null;
  /** The base model folder (tokenizer files, the adapter's base_model_name_or_path). */
  baseModelDir: string;
  gradMode: GradMode;
  adamw: AdamWOptions;
  /** A checkpoint's moments and the step they belong to. */
  resume?: { optimizer: Map<string, tf.Tensor>; step: number };
}

export class TfjsSteps implements StepRuntime {
  readonly runtime = 'tfjs';
  readonly mode: string;
  private readonly opt: AdamW;
  private grads: Map<string, tf.Tensor> | null = null;

  constructor(readonly inp: TfjsStepsInput) {
    this.mode = inp.gradMode;
    this.opt = new AdamW(inp.trainable, inp.adamw);
    if (inp.resume) this.opt.load(inp.resume.optimizer, inp.resume.step);
  }

  accumulate(rows: TokenizedExample[], denom: number, padId: number, dropoutKey: number): Promise<number> {
    const { model, trainable, adapters, gradMode } = this.inp;
    const mb = microBatch(rows, denom, padId);
    const dropout = adapters ? { dropout: adapters.dropout, key: dropoutKey } : undefined;
    const r = lossAndGrads(model, trainable, mb, gradMode, dropout);
    disposeMicroBatch(mb);
    if (!this.grads) this.grads = r.grads;
    else {
      for (const [name, g] of r.grads) {
        const prev = this.grads.get(name)!;
        this.grads.set(name, tf.add(prev, g));
        tf.dispose([prev, g]);
      }
    }
    return Promise.resolve(r.loss);
  }

  discard(): void {
    if (this.grads) tf.dispose([...this.grads.values()]);
    this.grads = null;
  }

  update(lr: number, maxNorm: number): number {
    if (!this.grads) throw new Error('update: no gradients accumulated');
    const norm = clipGlobalNorm(this.grads, maxNorm);
    this.opt.apply(this.grads, lr);
    this.discard();
    return norm;
  }

  evalLoss(rows: TokenizedExample[], denom: number, padId: number): Promise<number> {
    const mb = microBatch(rows, denom, padId);
    const loss = evalLoss(this.inp.model, mb);
    disposeMicroBatch(mb);
    return Promise.resolve(loss);
  }

  writeCheckpoint(dir: string, state: TrainerState): void {
    const { model, adapters, baseModelDir } = this.inp;
    writeCheckpointFiles(dir, { model, adapters, baseModelDir, optimizer: this.opt.state(), state });
  }

  /** Frees the moments, any pending gradients, the adapters and the model. */
  dispose(): Promise<void> {
    this.discard();
    this.opt.dispose();
    this.inp.adapters?.remove();
    this.inp.model.dispose();
    return Promise.resolve();
  }
}
