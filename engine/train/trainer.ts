// The training loop, as a job (engine/jobs/job.ts):
//
//   for each optimizer step s:
//     the micro-batches of s (batching.ts: a pure function of seed and s)
//     loss and gradients of each, summed   (normalized by the step's learned tokens)
//     clip to the global norm, AdamW at learning rate schedule(s)
//     every evalEvery steps: validation loss and perplexity
//     every saveEvery steps or minutes: a checkpoint (checkpoints.ts)
//
// Aborting the job's signal pauses: a step whose micro-batches are not all
// done is dropped, a checkpoint of the last finished step is written, and the
// run stops with status 'paused'. Aborting with reason CANCEL stops without a checkpoint.
// Resuming loads a checkpoint's weights, moments and step and continues as if
// never stopped: same data, same dropout masks, same learning rates.
import * as tf from '@tensorflow/tfjs';
import type { JobContext } from '../jobs/job';
import type { MobileLLM } from '../model/model';
import { evalLoss, lossAndGrads, type GradMode } from './backprop';
import { BatchPlan, disposeMicroBatch, learnedTokens, microBatch, type TokenizedExample } from './batching';
import { writeCheckpointFiles, type TrainerState } from './checkpoints';
import type { LoraAdapters } from './lora';
import { AdamW, clipGlobalNorm } from './optimizer';
import { RNG, mixSeed } from './rng';
import { learningRate } from './schedule';
import type { TrainOptions, TrainStatus } from './config';

/** Abort reason that cancels (no checkpoint) instead of pausing. */
export const CANCEL = 'cancel';

export interface MetricPoint {
  step: number;
  name: string;
  value: number;
}

/** Where a run's numbers and checkpoints go (the store, or a test's memory). */
export interface RunLog {
  metrics(points: MetricPoint[]): void;
  /** Writes a checkpoint: `write` fills an empty folder; `metrics` describe it (val_loss when known). */
  checkpoint(step: number, write: (dir: string) => void, metrics: Record<string, number>): Promise<void>;
}

export interface TrainInputs {
  model: MobileLLM;
  trainable: Map<string, tf.Variable>;
  adapters: LoraAdapters | null;
  baseModelDir: string;
  train: TokenizedExample[];
  val: TokenizedExample[];
  padId: number;
  options: TrainOptions;
  gradMode: GradMode;
  log: RunLog;
  resume?: { state: TrainerState; optimizer: Map<string, tf.Tensor> };
}

export interface TrainResult {
  status: TrainStatus;
  state: TrainerState;
}

export function totalSteps(o: TrainOptions, plan: BatchPlan): number {
  return o.maxSteps ?? o.epochs * plan.stepsPerEpoch;
}

/** Mean loss over the learned tokens of `rows`, in micro-batches of `batchSize`. */
export function validationLoss(model: MobileLLM, rows: TokenizedExample[], batchSize: number, padId: number): number {
  const denom = learnedTokens(rows);
  let loss = 0;
  for (let i = 0; i < rows.length; i += batchSize) {
    const mb = microBatch(rows.slice(i, i + batchSize), denom, padId);
    loss += evalLoss(model, mb);
    disposeMicroBatch(mb);
  }
  return loss;
}

export async function train(inp: TrainInputs, ctx: JobContext): Promise<TrainResult> {
  const o = inp.options;
  const plan = new BatchPlan(inp.train.length, o.batchSize, o.gradAccum, o.seed);
  const total = totalSteps(o, plan);
  const schedule = { peakLr: o.lr, warmupSteps: o.warmupSteps, totalSteps: total, decay: o.decay, minLrRatio: o.minLrRatio };
  const opt = new AdamW(inp.trainable, o.adamw);
  const state: TrainerState = inp.resume?.state ?? { step: 0, epoch: 0, seed: o.seed, bestValLoss: null, elapsedMs: 0, tokensSeen: 0 };
  if (inp.resume) opt.load(inp.resume.optimizer, state.step);
  let lastSave = { step: inp.resume ? state.step : -1, at: Date.now() };
  let lastVal: { step: number; loss: number } | null = null;
  let stepMs = 0; // moving average, for the ETA

  const save = async () => {
    const metrics: Record<string, number> = lastVal?.step === state.step ? { val_loss: lastVal.loss } : {};
    await inp.log.checkpoint(
      state.step,
      (dir) => writeCheckpointFiles(dir, { model: inp.model, adapters: inp.adapters, baseModelDir: inp.baseModelDir, optimizer: opt.state(), state }),
      metrics,
    );
    lastSave = { step: state.step, at: Date.now() };
  };
  const validate = () => {
    if (!inp.val.length) return;
    const loss = validationLoss(inp.model, inp.val, o.batchSize, inp.padId);
    lastVal = { step: state.step, loss };
    if (state.bestValLoss === null || loss < state.bestValLoss) state.bestValLoss = loss;
    inp.log.metrics([
      { step: state.step, name: 'val_loss', value: loss },
      { step: state.step, name: 'val_ppl', value: Math.exp(loss) },
    ]);
  };

  try {
    while (state.step < total && !ctx.signal.aborted) {
      const t0 = performance.now();
      const micros = plan.step(state.step).map((idx) => idx.map((i) => inp.train[i]));
      const denom = learnedTokens(micros.flat());
      let grads: Map<string, tf.Tensor> | null = null;
      let loss = 0;
      let tokens = 0;
      let done = 0;
      for (const [m, rows] of micros.entries()) {
        if (ctx.signal.aborted) break;
        done++;
        const mb = microBatch(rows, denom, inp.padId);
        const dropout = inp.adapters ? { dropout: inp.adapters.dropout, key: mixSeed(o.seed, RNG.dropout, state.step, m) } : undefined;
        const r = lossAndGrads(inp.model, inp.trainable, mb, inp.gradMode, dropout);
        disposeMicroBatch(mb);
        loss += r.loss;
        tokens += rows.reduce((n, row) => n + row.ids.length, 0);
        if (!grads) grads = r.grads;
        else for (const [name, g] of r.grads) sum(grads, name, g);
        // Yield to the event loop so that Ctrl-C or a pause request can arrive.
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (done < micros.length) {
        // Stopped inside the step: drop it (the checkpoint holds the last whole step).
        if (grads) tf.dispose([...grads.values()]);
        break;
      }
      const gradNorm = clipGlobalNorm(grads!, o.maxGradNorm > 0 ? o.maxGradNorm : Infinity);
      const lr = learningRate(state.step, schedule);
      opt.apply(grads!, lr);
      tf.dispose([...grads!.values()]);
      state.step++;
      state.epoch = plan.epochOf(state.step - 1);
      state.tokensSeen += tokens;
      const ms = performance.now() - t0;
      state.elapsedMs += ms;
      stepMs = stepMs ? 0.8 * stepMs + 0.2 * ms : ms;
      const tokensPerSecond = tokens / (ms / 1000);
      const etaSeconds = ((total - state.step) * stepMs) / 1000;
      inp.log.metrics([
        { step: state.step, name: 'loss', value: loss },
        { step: state.step, name: 'lr', value: lr },
        { step: state.step, name: 'grad_norm', value: gradNorm },
        { step: state.step, name: 'tokens_per_s', value: tokensPerSecond },
      ]);
      ctx.progress({
        phase: 'training',
        done: state.step,
        total,
        unit: 'steps',
        metrics: { loss, lr, tokens_per_s: tokensPerSecond, eta_s: Math.round(etaSeconds), epoch: state.step / plan.stepsPerEpoch },
      });
      const last = state.step === total;
      if (last || (o.evalEvery > 0 && state.step % o.evalEvery === 0)) validate();
      const dueBySteps = o.saveEvery > 0 && state.step % o.saveEvery === 0;
      const dueByTime = o.saveEveryMinutes > 0 && Date.now() - lastSave.at >= o.saveEveryMinutes * 60_000;
      if (last || dueBySteps || dueByTime) await save();
    }
    if (ctx.signal.aborted) {
      if (ctx.signal.reason === CANCEL) return { status: 'cancelled', state };
      if (state.step > 0 && lastSave.step !== state.step) await save();
      return { status: 'paused', state };
    }
    return { status: 'completed', state };
  } finally {
    opt.dispose();
  }
}

function sum(into: Map<string, tf.Tensor>, name: string, g: tf.Tensor): void {
  const prev = into.get(name)!;
  into.set(name, tf.add(prev, g));
  tf.dispose([prev, g]);
}
