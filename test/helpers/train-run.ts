// A RunLog that keeps a training run's metrics in memory and writes its
// checkpoints to plain folders, and the inputs train() needs for a golden tiny
// model, so the trainer can be tested without the store.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../../engine/io/checkpoint';
import type { TokenizedExample } from '../../engine/train/batching';
import { applyLora, loadAdapter } from '../../engine/train/lora';
import { readOptimizerState, readTrainerState } from '../../engine/train/checkpoints';
import type { MetricPoint, RunLog, TrainInputs } from '../../engine/train/trainer';
import { DEFAULT_TRAIN_OPTIONS, LoraSettings, type TrainOptions } from '../../engine/train/config';
import type { z } from 'zod';
import { trainable as variable, type GradMode } from '../../engine/train/backprop';
import { rngFor } from '../../engine/train/rng';
import { goldenDir, type GoldenCase } from './golden';

export class MemoryRunLog implements RunLog {
  readonly points: MetricPoint[] = [];
  readonly saved: { step: number; dir: string; metrics: Record<string, number> }[] = [];

  constructor(
    private readonly root: string,
    private readonly onMetrics: (points: MetricPoint[]) => void = () => {},
  ) {}

  metrics(points: MetricPoint[]): void {
    this.points.push(...points);
    this.onMetrics(points);
  }

  async checkpoint(step: number, write: (dir: string) => void, metrics: Record<string, number>): Promise<void> {
    const dir = path.join(this.root, `step-${step}`);
    fs.mkdirSync(dir, { recursive: true });
    write(dir);
    this.saved.push({ step, dir, metrics });
  }

  curve(name: string): number[] {
    return this.points.filter((p) => p.name === name).map((p) => p.value);
  }
}

/** n random token sequences of `length` ids in [3, vocab), every token learned. */
export function randomSequences(n: number, length: number, vocab: number, seed: number): TokenizedExample[] {
  const random = rngFor(seed, 99);
  return Array.from({ length: n }, () => ({
    ids: Array.from({ length }, () => 3 + Math.floor(random() * (vocab - 3))),
    learn: new Uint8Array(length).fill(1),
  }));
}

export interface TinyRun {
  method: 'full' | 'lora';
  lora?: z.input<typeof LoraSettings>;
  options: Partial<TrainOptions>;
  gradMode?: GradMode;
  train: TokenizedExample[];
  val?: TokenizedExample[];
  log: RunLog;
  /** Continue from this checkpoint folder. */
  from?: string;
  model?: GoldenCase;
}

/** train()'s inputs for a golden tiny model (dispose with disposeInputs). */
export function tinyInputs(r: TinyRun): TrainInputs {
  const base = goldenDir(r.model ?? 'tiny-gqa');
  let model;
  let adapters = null;
  let trainable: Map<string, tf.Variable>;
  if (r.method === 'full') {
    model = loadModel(r.from ?? base, { wrap: variable }).model;
    trainable = new Map([...model.namedParams()].map(([n, p]) => [n, p.tensor as tf.Variable]));
  } else {
    model = loadModel(base).model;
    adapters = r.from ? loadAdapter(model, r.from, variable) : applyLora(model, LoraSettings.parse(r.lora), { seed: 0 }, variable);
    trainable = new Map([...adapters.params()].map(([n, t]) => [n, t as tf.Variable]));
  }
  return {
    model,
    trainable,
    adapters,
    baseModelDir: base,
    train: r.train,
    val: r.val ?? [],
    padId: 0,
    options: { ...DEFAULT_TRAIN_OPTIONS, evalEvery: 0, saveEvery: 0, saveEveryMinutes: 0, ...r.options },
    gradMode: r.gradMode ?? 'tape',
    log: r.log,
    resume: r.from ? { state: readTrainerState(r.from), optimizer: readOptimizerState(r.from) } : undefined,
  };
}

export function disposeInputs(inp: TrainInputs): void {
  if (inp.resume) tf.dispose([...inp.resume.optimizer.values()]);
  inp.adapters?.remove();
  inp.model.dispose();
}
