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
// The arithmetic (gradients, their sum, clipping, AdamW) is a StepRuntime's:
// TensorFlow.js (tfjs-steps.ts) or ONNX Runtime (onnx-steps.ts); this loop is the
// same for both (open-steps.ts chooses).
import type { JobContext } from '../jobs/job';
import { RUNTIME_LABELS, type RuntimeName } from '../runtime/runtime';
import { BatchPlan, learnedTokens, type TokenizedExample } from './batching';
import type { TrainerState } from './checkpoints';
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

/**
 * What computes the steps: the trained tensors, their gradients and optimizer
 * state, on one runtime (tfjs-steps.ts, onnx-steps.ts). The loop below is the
 * same for both.
 */
export interface StepRuntime {
  readonly runtime: RuntimeName;
  /** How the backward pass keeps activations (tfjs: tape or recompute; onnx: one graph). */
  readonly mode: string;
  /** Adds the gradients of one micro-batch (its share Σ w·nll / denom) to the step's; returns that share. */
  accumulate(rows: TokenizedExample[], denom: number, padId: number, dropoutKey: number): Promise<number>;
  /** Drops the gradients of a step not finished. */
  discard(): void;
  /** Clips the step's gradients to a global norm of `maxNorm`, takes an AdamW step at `lr`, clears them; returns the norm before clipping. */
  update(lr: number, maxNorm: number): number;
  /** Σ w·nll / denom of a micro-batch, without gradients. */
  evalLoss(rows: TokenizedExample[], denom: number, padId: number): Promise<number>;
  /** Writes the trained weights, optimizer moments and `state` into the empty folder `dir`. */
  writeCheckpoint(dir: string, state: TrainerState): void;
  dispose(): Promise<void>;
}

export interface TrainInputs {
  steps: StepRuntime;
  train: TokenizedExample[];
  val: TokenizedExample[];
  padId: number;
  options: TrainOptions;
  log: RunLog;
  /** Continue from a checkpoint's state (the step runtime holds its weights and moments). */
  resume?: TrainerState;
}

export interface TrainResult {
  status: TrainStatus;
  state: TrainerState;
}

export function totalSteps(o: TrainOptions, plan: BatchPlan): number {
  return o.maxSteps ?? o.epochs * plan.stepsPerEpoch;
}

/** Mean loss over the learned tokens of `rows`, in micro-batches of `batchSize`. */
export async function validationLoss(steps: StepRuntime, rows: TokenizedExample[], batchSize: number, padId: number): Promise<number> {
  const denom = learnedTokens(rows);
  let loss = 0;
  for (let i = 0; i < rows.length; i += batchSize) loss += await steps.evalLoss(rows.slice(i, i + batchSize), denom, padId);
  return loss;
}

export async function train(inp: TrainInputs, ctx: JobContext): Promise<TrainResult> {
  const o = inp.options;
  const plan = new BatchPlan(inp.train.length, o.batchSize, o.gradAccum, o.seed);
  const total = totalSteps(o, plan);
  const schedule = { peakLr: o.lr, warmupSteps: o.warmupSteps, totalSteps: total, decay: o.decay, minLrRatio: o.minLrRatio };
  const steps = inp.steps;
  const state: TrainerState = inp.resume ? { ...inp.resume } : { step: 0, epoch: 0, seed: o.seed, bestValLoss: null, elapsedMs: 0, tokensSeen: 0 };
  let lastSave = { step: inp.resume ? state.step : -1, at: Date.now() };
  let lastVal: { step: number; loss: number } | null = null;
  let stepMs = 0; // moving average, for the ETA

  const save = async () => {
    const metrics: Record<string, number> = lastVal?.step === state.step ? { val_loss: lastVal.loss } : {};
    await inp.log.checkpoint(state.step, (dir) => steps.writeCheckpoint(dir, state), metrics);
    lastSave = { step: state.step, at: Date.now() };
  };
  const validate = async () => {
    if (!inp.val.length) return;
    const loss = await validationLoss(steps, inp.val, o.batchSize, inp.padId);
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
      let loss = 0;
      let tokens = 0;
      let done = 0;
      for (const [m, rows] of micros.entries()) {
        if (ctx.signal.aborted) break;
        done++;
        loss += await steps.accumulate(rows, denom, inp.padId, mixSeed(o.seed, RNG.dropout, state.step, m));
        tokens += rows.reduce((n, row) => n + row.ids.length, 0);
        // Yield to the event loop so that Ctrl-C or a pause request can arrive.
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (done < micros.length) {
        // Stopped inside the step: drop it (the checkpoint holds the last whole step).
        steps.discard();
        break;
      }
      const lr = learningRate(state.step, schedule);
      const gradNorm = steps.update(lr, o.maxGradNorm > 0 ? o.maxGradNorm : Infinity);
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
        message: `${RUNTIME_LABELS[steps.runtime]} · ${steps.mode}`, // every event names the runtime: a page that opens mid-run sees it
      });
      const last = state.step === total;
      if (last || (o.evalEvery > 0 && state.step % o.evalEvery === 0)) await validate();
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
    steps.discard();
  }
}
