// A RunLog that keeps a training run's metrics in memory and writes its
// checkpoints to plain folders, and the inputs train() needs for a golden tiny
// model, so the trainer can be tested without the store.
import fs from 'node:fs';
import path from 'node:path';
import type { TokenizedExample } from '../../engine/train/batching';
import { readTrainerState } from '../../engine/train/checkpoints';
import { openSteps } from '../../engine/train/open-steps';
import type { RuntimeName } from '../../engine/runtime/runtime';
import type { MetricPoint, RunLog, TrainInputs } from '../../engine/train/trainer';
import { DEFAULT_TRAIN_OPTIONS, LoraSettings, type TrainOptions } from '../../engine/train/config';
import type { z } from 'zod';
import type { GradMode } from '../../engine/train/backprop';
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
  /** Default tfjs. */
  runtime?: RuntimeName;
  gradMode?: GradMode;
  train: TokenizedExample[];
  val?: TokenizedExample[];
  log: RunLog;
  /** Continue from this checkpoint folder. */
  from?: string;
  model?: GoldenCase;
}

/** train()'s inputs for a golden tiny model, on the chosen runtime (dispose with disposeInputs). */
export async function tinyInputs(r: TinyRun): Promise<TrainInputs> {
  const options = { ...DEFAULT_TRAIN_OPTIONS, evalEvery: 0, saveEvery: 0, saveEveryMinutes: 0, ...r.options };
  const resume = r.from ? readTrainerState(r.from) : undefined;
  const steps = await openSteps({
    runtime: r.runtime ?? 'tfjs',
    baseModelDir: goldenDir(r.model ?? 'tiny-gqa'),
    lora: r.method === 'lora' ? LoraSettings.parse(r.lora) : null,
    from: r.from && resume ? { dir: r.from, step: resume.step } : null,
    seed: 0,
    adamw: options.adamw,
    gradMode: r.gradMode ?? 'tape',
    threads: 1,
  });
  return { steps, train: r.train, val: r.val ?? [], padId: 0, options, log: r.log, resume };
}

export async function disposeInputs(inp: TrainInputs): Promise<void> {
  await inp.steps.dispose();
}
