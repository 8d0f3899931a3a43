// Zero-shot multiple choice (see tasks.ts for the file and the rules): each
// choice's summed log-likelihood, the prediction by sum (acc) and by sum per
// character (acc_norm), and the means with their standard errors.
import type { JobContext } from '../jobs/job';
import type { InferenceRuntime } from '../runtime/runtime';
import { loglikelihoods } from './loglikelihood';
import type { EncodedChoice } from './tasks';

export interface EncodedItem {
  task: string;
  /** Line in the tasks file. */
  line: number;
  gold: number;
  choices: EncodedChoice[];
}

export interface ItemScore {
  task: string;
  line: number;
  gold: number;
  /** Summed log-likelihood of each choice. */
  loglikelihoods: number[];
  /** Chosen by sum, and by sum / length. */
  pred: number;
  predNorm: number;
}

export interface Metrics {
  items: number;
  acc: number;
  /** null for a single item. */
  accStderr: number | null;
  accNorm: number;
  accNormStderr: number | null;
}

/** The index of the largest value, the first one on a tie (numpy's argmax). */
export function argmax(xs: number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

export function scoreItem(item: EncodedItem, lls: number[]): ItemScore {
  return {
    task: item.task,
    line: item.line,
    gold: item.gold,
    loglikelihoods: lls,
    pred: argmax(lls),
    predNorm: argmax(lls.map((ll, i) => ll / item.choices[i].normLength)),
  };
}

/** Mean and its standard error, sqrt(sample variance / n) (the harness's mean_stderr). */
function meanStderr(xs: number[]): { mean: number; stderr: number | null } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: null };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, stderr: Math.sqrt(variance / n) };
}

export function metrics(scores: ItemScore[]): Metrics {
  const acc = meanStderr(scores.map((s) => (s.pred === s.gold ? 1 : 0)));
  const norm = meanStderr(scores.map((s) => (s.predNorm === s.gold ? 1 : 0)));
  return { items: scores.length, acc: acc.mean, accStderr: acc.stderr, accNorm: norm.mean, accNormStderr: norm.stderr };
}

/** Metrics per task (in order of first appearance) and over all items (each item counting once). */
export function summarize(scores: ItemScore[]): { tasks: ({ task: string } & Metrics)[]; overall: Metrics } {
  const byTask = new Map<string, ItemScore[]>();
  for (const s of scores) {
    const list = byTask.get(s.task);
    if (list) list.push(s);
    else byTask.set(s.task, [s]);
  }
  return { tasks: [...byTask].map(([task, list]) => ({ task, ...metrics(list) })), overall: metrics(scores) };
}

/** Scores every item through `runtime`; progress in items, with the running accuracy. */
export async function scoreItems(runtime: InferenceRuntime, items: EncodedItem[], ctx: JobContext): Promise<ItemScore[]> {
  const scores: ItemScore[] = [];
  let correct = 0;
  for (const item of items) {
    const lls = await loglikelihoods(runtime, item.choices, ctx.signal);
    const s = scoreItem(item, lls);
    scores.push(s);
    if (s.pred === s.gold) correct++;
    ctx.progress({ phase: item.task, done: scores.length, total: items.length, unit: 'items', metrics: { acc: correct / scores.length } });
  }
  return scores;
}
