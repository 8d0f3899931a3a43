// Running an experiment: every variant × seed is one pre-training run in the
// store (engine/train/pretrain.ts), its model written under
// <home>/lab/<experiment>/<scale>/<variant>-seed<N>/model — the run's `out`,
// which is how a later `lab run` finds it again: a completed run is skipped,
// a paused or interrupted one resumed, a failed or cancelled one started anew.
// Once all are trained, each model's held-out perplexity is measured
// (engine/eval; quantized copies by engine/quant first when the experiment
// quantizes), kept in evaluations.json beside them, as is each float model's
// decode latency on the chat's runtime (latency.json, engine/lab/latency.ts)
// and its zero-shot accuracy (zero-shot.json, engine/lab/zero-shot.ts),
// and the result table is set against what the paper reports.
import fs from 'node:fs';
import path from 'node:path';
import type { Store } from '../store/store';
import type { Run } from '../store/records';
import type { JobContext, JobProgress } from '../jobs/job';
import { countParams, effectiveDepth } from '../model/config';
import { evaluateModel } from '../eval/job';
import { quantizeJob } from '../quant/job';
import type { QuantMethod } from '../quant/spec';
import { z } from 'zod';
import { bundledResources } from '../server/resources';
import type { RuntimeName } from '../runtime/runtime';
import { PretrainConfig, pretrain, type PretrainInput } from '../train/pretrain';
import { formatStat } from './report';
import { LATENCY_FILE, MeasuredLatency, modelDecodeLatency } from './latency';
import { Measurements } from './measurements';
import { MeasuredZeroShot, modelZeroShot, ZERO_SHOT_FILE, zeroShotTasks } from './zero-shot';
import { planVariants, variantPretrainInput, type Expectation, type Experiment, type PlannedVariant, type Scale } from './experiment';

export interface LabRunOptions {
  scale: Scale;
  /** Training runtime of new runs (resumed runs keep theirs); evaluation runs on it too unless 'auto'. */
  runtime?: PretrainInput['runtime'];
  /** Held-out text (default: the bundled resources/eval/held-out.txt). */
  evalText?: string;
  /** Multiple-choice tasks for the zero-shot accuracy (default: the bundled resources/eval/held-out-choice.jsonl). */
  evalTasks?: string;
  /** Train nothing (mlw lab import): the variants' runs already in the store are measured; one without a run stays empty. */
  evaluateOnly?: boolean;
  /** Only read what is trained and measured so far (the Lab page's view while a run goes on): trains and measures nothing. */
  readOnly?: boolean;
}

/** Mean and sample standard deviation (0 for a single value). */
export interface Stat {
  mean: number;
  spread: number;
  n: number;
}

export type VariantRow = {
  name: string;
  label: string;
  params: number;
  depth: number;
  runs: { seed: number; runId: number; status: string }[];
  /** Validation loss on the corpus split at the end of training. */
  valLoss: Stat | null;
  /** Held-out perplexity of the float model. */
  ppl: Stat | null;
  /** Held-out perplexity of each quantized copy, and its relative rise over the float model's. */
  quantized: Partial<Record<QuantMethod, { ppl: Stat; rise: number }>>;
  /** Decode ms/token of the float model on the chat's runtime (engine/lab/latency.ts), over seeds. */
  decodeMs: Stat | null;
  /** The runtime that measured decodeMs ("onnx"; "tfjs" where ONNX Runtime does not load). */
  latencyRuntime: RuntimeName | null;
  /** Zero-shot accuracy (acc, 0–1) of the float model on the multiple-choice tasks, over seeds. */
  zeroShotAcc: Stat | null;
  /** The standard error of each seed's acc over the items, averaged over seeds: the noise a single seed's acc carries. */
  zeroShotStderr: number | null;
};

export interface ClaimCheck {
  expectation: Expectation;
  /** The expectation in words. */
  text: string;
  agrees: 'yes' | 'no' | 'within noise' | 'not measured';
  measured: string;
}

export interface LabResult {
  experiment: string;
  question: string;
  scale: Scale;
  holdEqual: Experiment['holdEqual'];
  budget: { steps: number; tokensPerStep: number; seeds: number[]; corpus: string[] };
  /** False when a run stopped (Ctrl-C) before every variant was trained: rows are partial. */
  complete: boolean;
  rows: VariantRow[];
  paper: { source: string; says: string };
  claims: ClaimCheck[];
  evalText: string;
}

const Evaluation = z.object({ runId: z.number().int().positive(), ppl: z.number().positive() });

function stat(xs: number[]): Stat | null {
  if (!xs.length) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const spread = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, spread, n: xs.length };
}

/** The configuration keys that must match for a stored run to count as this variant's (the command line and runtime may differ). */
function sameTraining(run: Run, input: PretrainInput): string | null {
  const want = PretrainConfig.parse(input) as Record<string, unknown>;
  const have = run.config;
  for (const key of Object.keys(want)) {
    if (key === 'commandLine' || key === 'runtime') continue;
    // Runs from before a key existed get its default.
    const stored = have[key] ?? (PretrainConfig.shape as Record<string, { parse(v: unknown): unknown }>)[key].parse(undefined);
    if (JSON.stringify(stored) !== JSON.stringify(want[key])) return key;
  }
  return null;
}

/** The newest pre-training run writing to `out`. */
function runFor(store: Store, out: string): Run | undefined {
  return store.runs.list({ kind: 'pretrain' }).find((r) => r.config.out === out);
}

function prefixed(ctx: JobContext, prefix: string): JobContext {
  return { signal: ctx.signal, progress: (p: JobProgress) => ctx.progress({ ...p, phase: `${prefix} · ${p.phase ?? ''}` }) };
}

/** Trains (or resumes) one variant × seed; returns its run once it stops. */
async function trainVariant(store: Store, e: Experiment, o: LabRunOptions, v: PlannedVariant, seed: number, out: string, ctx: JobContext): Promise<Run> {
  const input = variantPretrainInput(e, o.scale, v, seed, out, o.runtime ?? 'auto');
  const existing = runFor(store, out);
  const vctx = prefixed(ctx, `${v.name} seed ${seed}`);
  if (existing) {
    const differs = sameTraining(existing, input);
    if (differs) {
      throw new Error(
        `${e.name} variant "${v.name}" (seed ${seed}): run ${existing.id} was trained with another "${differs}"; delete it (mlw store runs delete ${existing.id} --yes) or rename the variant`,
      );
    }
    if (existing.status === 'completed' && fs.existsSync(out)) return existing;
    if (existing.status === 'running' || existing.status === 'queued') {
      throw new Error(`${e.name} variant "${v.name}" (seed ${seed}): run ${existing.id} is ${existing.status} in another process`);
    }
    if (existing.status === 'paused' || existing.status === 'interrupted') {
      vctx.progress({ phase: `resuming run ${existing.id}`, runId: existing.id });
      const r = await pretrain(store, { resumeRunId: existing.id }, vctx);
      return store.runs.get(r.runId);
    }
  }
  const r = await pretrain(store, input, vctx);
  return store.runs.get(r.runId);
}

/** Held-out perplexity of a model folder with windows of the training length. */
async function heldOutPpl(modelDir: string, text: string, window: number, runtime: RuntimeName | undefined, ctx: JobContext): Promise<number> {
  const report = await evaluateModel({ modelDir, text, window, runtime }, ctx);
  if (report.type !== 'perplexity') throw new Error('evaluation: expected a perplexity report');
  return report.ppl;
}

function describe(x: Expectation): string {
  if ('lower' in x) return `${x.lower} has a lower held-out perplexity than ${x.than}`;
  if ('close' in x) return `${x.close.join(', ')} lie within ${(x.within * 100).toFixed(0)}% of each other`;
  return `${x.quantDrop} raises every variant's perplexity by less than ${(x.below * 100).toFixed(0)}%`;
}

/** Checks one expectation against the rows (perplexities are compared by their means; spreads over seeds decide "within noise"). */
export function checkClaim(x: Expectation, rows: VariantRow[]): ClaimCheck {
  const text = describe(x);
  const byName = new Map(rows.map((r) => [r.name, r]));
  const none = { expectation: x, text, agrees: 'not measured' as const, measured: 'not measured yet' };
  if ('lower' in x) {
    const [a, b] = [byName.get(x.lower)?.ppl, byName.get(x.than)?.ppl];
    if (!a || !b) return none;
    const diff = b.mean - a.mean;
    const noise = a.spread + b.spread;
    const agrees = Math.abs(diff) <= noise ? 'within noise' : diff > 0 ? 'yes' : 'no';
    return { expectation: x, text, agrees, measured: `${x.lower} ${formatStat(a)} vs ${x.than} ${formatStat(b)}` };
  }
  if ('close' in x) {
    const ppls = x.close.map((n) => byName.get(n)?.ppl);
    if (ppls.some((p) => !p)) return none;
    const means = ppls.map((p) => p!.mean);
    const rel = Math.max(...means) / Math.min(...means) - 1;
    return { expectation: x, text, agrees: rel <= x.within ? 'yes' : 'no', measured: `spread ${(rel * 100).toFixed(1)}%` };
  }
  const rises = rows.map((r) => r.quantized[x.quantDrop]?.rise);
  if (!rows.length || rises.some((r) => r === undefined)) return none;
  const worst = Math.max(...(rises as number[]));
  return { expectation: x, text, agrees: worst < x.below ? 'yes' : 'no', measured: `largest rise ${(worst * 100).toFixed(2)}%` };
}

/** The folder an experiment's runs write their models under. */
export function labFolder(store: Store, e: Experiment, scale: Scale): string {
  return path.join(store.layout.root, 'lab', e.name, scale);
}

/** The model folder of a variant × seed in the home `root`: its run's `out`, by which runExperiment finds it (labFolder's layout). */
export function variantOut(root: string, e: Experiment, scale: Scale, variant: string, seed: number): string {
  return path.join(root, 'lab', e.name, scale, `${variant}-seed${seed}`, 'model');
}

/** Runs (or resumes) an experiment at a scale and returns its result table. The backend must be initialized. */
export async function runExperiment(store: Store, e: Experiment, o: LabRunOptions, ctx: JobContext): Promise<LabResult> {
  const plan = planVariants(e, o.scale);
  const budget = e.scales[o.scale].budget;
  const evalText = o.evalText ?? bundledResources().evalTexts[0]?.path;
  if (!evalText || !fs.existsSync(evalText)) throw new Error(`lab: the held-out text ${evalText ?? '(bundled resources/eval/held-out.txt)'} is missing`);
  const dir = labFolder(store, e, o.scale);
  const evaluations = new Measurements(path.join(dir, 'evaluations.json'), Evaluation);
  const latencies = new Measurements(path.join(dir, LATENCY_FILE), MeasuredLatency);
  const zeroShots = new Measurements(path.join(dir, ZERO_SHOT_FILE), MeasuredZeroShot);
  const tasks = zeroShotTasks(o.evalTasks);
  const evalRuntime = o.runtime && o.runtime !== 'auto' ? o.runtime : undefined;
  const folderOf = (v: PlannedVariant, seed: number) => path.join(dir, `${v.name}-seed${seed}`);

  // Train every variant × seed first, so that a stop leaves the cheap part (evaluation) for later.
  const runs = new Map<string, Run>();
  let complete = true;
  for (const v of plan) {
    for (const seed of budget.seeds) {
      if (o.readOnly || o.evaluateOnly) {
        const run = runFor(store, path.join(folderOf(v, seed), 'model'));
        if (run) runs.set(`${v.name}/${seed}`, run);
        if (run?.status !== 'completed') complete = false;
        continue;
      }
      const run = await trainVariant(store, e, o, v, seed, path.join(folderOf(v, seed), 'model'), ctx);
      runs.set(`${v.name}/${seed}`, run);
      if (run.status !== 'completed') complete = false;
      if (ctx.signal.aborted) break;
    }
    if (ctx.signal.aborted) {
      complete = false;
      break;
    }
  }

  const rows: VariantRow[] = [];
  for (const v of plan) {
    const row: VariantRow = {
      name: v.name,
      label: v.label,
      params: countParams(v.config).total,
      depth: effectiveDepth(v.config),
      runs: [],
      valLoss: null,
      ppl: null,
      quantized: {},
      decodeMs: null,
      latencyRuntime: null,
      zeroShotAcc: null,
      zeroShotStderr: null,
    };
    const valLosses: number[] = [];
    const ppls: number[] = [];
    const quantPpls = new Map<QuantMethod, number[]>();
    const decodeMs: number[] = [];
    const zeroShot: { acc: number; stderr: number | null }[] = [];
    for (const seed of budget.seeds) {
      const run = runs.get(`${v.name}/${seed}`);
      if (!run) continue;
      row.runs.push({ seed, runId: run.id, status: run.status });
      if (run.status !== 'completed') continue;
      const last = store.metrics.curve(run.id, 'val_loss').values.at(-1);
      if (last !== undefined) valLosses.push(last);
      const modelDir = path.join(folderOf(v, seed), 'model');
      // Stopped: what was measured before, nothing new.
      const stopped = ctx.signal.aborted || o.readOnly;
      const vctx = prefixed(ctx, `${v.name} seed ${seed}`);
      const ofThisRun = (r: { runId: number }) => r.runId === run.id;
      const measure = async (key: string, dirOf: () => Promise<string>): Promise<number | null> => {
        const r = await evaluations.get(
          key,
          ofThisRun,
          stopped ? null : async () => ({ runId: run.id, ppl: await heldOutPpl(await dirOf(), evalText, budget.seqLen, evalRuntime, vctx) }),
        );
        return r?.ppl ?? null;
      };
      const float = await measure(`${v.name}-seed${seed}/float`, async () => modelDir);
      if (float !== null) ppls.push(float);
      const latency = await latencies.get(
        `${v.name}-seed${seed}`,
        ofThisRun,
        stopped
          ? null
          : () => {
              vctx.progress({ phase: 'measuring decode latency' });
              return modelDecodeLatency(modelDir, run.id);
            },
      );
      if (latency) {
        decodeMs.push(latency.decodeMs);
        row.latencyRuntime = latency.runtime;
      }
      const zs = await zeroShots.get(
        `${v.name}-seed${seed}`,
        (r) => ofThisRun(r) && r.tasksSha256 === tasks.sha256,
        stopped ? null : () => modelZeroShot(modelDir, run.id, tasks.file, evalRuntime, vctx),
      );
      if (zs) zeroShot.push({ acc: zs.acc, stderr: zs.accStderr });
      for (const method of e.quantize) {
        const qDir = path.join(folderOf(v, seed), method);
        const ppl = await measure(`${v.name}-seed${seed}/${method}`, async () => {
          await quantizeJob({ modelDir, outDir: qDir, method, evalIds: null, evalSource: evalText }, prefixed(ctx, `${v.name} seed ${seed} ${method}`));
          return qDir;
        });
        if (ppl !== null) quantPpls.set(method, [...(quantPpls.get(method) ?? []), ppl]);
      }
    }
    row.valLoss = stat(valLosses);
    row.ppl = stat(ppls);
    row.decodeMs = stat(decodeMs);
    row.zeroShotAcc = stat(zeroShot.map((z) => z.acc));
    const stderrs = zeroShot.flatMap((z) => (z.stderr === null ? [] : [z.stderr]));
    row.zeroShotStderr = stderrs.length ? stderrs.reduce((a, b) => a + b, 0) / stderrs.length : null;
    for (const [method, qs] of quantPpls) {
      const q = stat(qs)!;
      row.quantized[method] = { ppl: q, rise: row.ppl ? q.mean / row.ppl.mean - 1 : NaN };
    }
    rows.push(row);
  }
  return {
    experiment: e.name,
    question: e.question,
    scale: o.scale,
    holdEqual: e.holdEqual,
    budget: { steps: budget.steps, tokensPerStep: budget.batchSize * budget.gradAccum * budget.seqLen, seeds: budget.seeds, corpus: budget.corpus },
    complete,
    rows,
    paper: { source: e.paper.source, says: e.paper.says },
    claims: e.paper.expect.map((x) => checkClaim(x, rows)),
    evalText,
  };
}
