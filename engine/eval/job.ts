// `eval` as a job: a model folder and a text (perplexity) or a tasks file
// (zero-shot multiple choice) → an evaluation report. Inputs are read and
// checked before the model is loaded; recording the report in the store is
// the caller's step (record.ts).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openRuntime } from '../folder/inference';
import { readModelFolder, type ModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import type { JobContext } from '../jobs/job';
import type { InferenceRuntime, RuntimeName } from '../runtime/runtime';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { scoreItems, summarize, type EncodedItem } from './multiple-choice';
import { slidingPerplexity, slidingWindows } from './perplexity';
import type { EvalReport } from './report';
import { encodeItem, limitPerTask, readTasks } from './tasks';

export interface EvalParams {
  modelDir: string;
  /** Perplexity of this text file (BOS, then its tokens)… */
  text?: string;
  /** …or zero-shot multiple choice on this tasks file (tasks.ts). Exactly one of the two. */
  tasks?: string;
  /** Perplexity: tokens per window (default: the model's context) and tokens each window moves on (default: window − 1). */
  window?: number;
  stride?: number;
  /** Tasks: only the first `limit` items of each task. */
  limit?: number;
  /** Tasks: put BOS before text contexts (default false, as the harness does for Hugging Face models). */
  bos?: boolean;
  /** Default: the fastest runtime that starts (runtime/select.ts). */
  runtime?: RuntimeName;
}

function inputFile(file: string): { bytes: Buffer; info: { path: string; sha256: string; bytes: number } } {
  if (!fs.existsSync(file)) throw new Error(`${file}: not found`);
  const bytes = fs.readFileSync(file);
  return { bytes, info: { path: path.resolve(file), sha256: crypto.createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length } };
}

function tokenizerFor(dir: string, why: string): Tokenizer {
  try {
    return loadTokenizer(dir);
  } catch (e) {
    throw new Error(`${why} needs the model's tokenizer: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
}

/** Opens the folder on a runtime, runs `fn`, and frees the runtime. */
async function withRuntime<T>(folder: ModelFolder, p: EvalParams, fn: (runtime: InferenceRuntime, format: string) => Promise<T>): Promise<T> {
  const { format } = checkModelFolder(folder);
  const { runtime } = await openRuntime(folder, { runtime: p.runtime });
  try {
    return await fn(runtime, format);
  } finally {
    await runtime.dispose();
  }
}

async function perplexityReport(p: EvalParams & { text: string }, ctx: JobContext): Promise<EvalReport> {
  const { bytes, info } = inputFile(p.text);
  const folder = readModelFolder(p.modelDir);
  const ids = tokenizerFor(folder.tokenizerDir, 'perplexity of a text').encode(bytes.toString('utf8'), { bos: true });
  const maxPositions = folder.config.maxPositions;
  const window = p.window ?? maxPositions;
  if (window > maxPositions) throw new Error(`window ${window} exceeds the model's ${maxPositions}-token context`);
  const stride = p.stride ?? window - 1;
  slidingWindows(ids.length, window, stride); // checks window, stride and the text's length before the model loads
  return withRuntime(folder, p, async (runtime, format) => {
    const start = performance.now();
    const r = await slidingPerplexity(runtime, ids, window, stride, ctx);
    const seconds = (performance.now() - start) / 1000;
    return {
      version: 1,
      type: 'perplexity',
      model: { path: path.resolve(p.modelDir), format },
      runtime: { name: runtime.name, description: runtime.describe() },
      seconds,
      text: info,
      tokens: r.tokens,
      window,
      stride,
      windows: r.windows,
      nll: r.nll,
      ppl: r.ppl,
      tokensPerSecond: r.tokens / seconds,
    };
  });
}

async function tasksReport(p: EvalParams & { tasks: string }, ctx: JobContext): Promise<EvalReport> {
  const { info } = inputFile(p.tasks);
  const folder = readModelFolder(p.modelDir);
  const all = readTasks(p.tasks);
  const lines = p.limit === undefined ? all : limitPerTask(all, p.limit);
  const needsText = lines.some(({ row }) => !('context_ids' in row));
  const tok = needsText ? tokenizerFor(folder.tokenizerDir, `${p.tasks} (text items)`) : null;
  const bos = p.bos ?? false;
  const vocab = folder.config.vocabSize;
  const items: EncodedItem[] = lines.map(({ row, line }) => {
    const where = `${p.tasks}:${line}`;
    const choices = encodeItem(row, tok, bos, where);
    const bad = choices.flatMap((c) => [...c.context, ...c.continuation]).find((id) => id >= vocab);
    if (bad !== undefined) throw new Error(`${where}: token id ${bad} is outside the model's vocabulary (size ${vocab})`);
    return { task: row.task, line, gold: row.gold, choices };
  });
  return withRuntime(folder, p, async (runtime, format) => {
    const start = performance.now();
    const { tasks, overall } = summarize(await scoreItems(runtime, items, ctx));
    return {
      version: 1,
      type: 'multiple_choice',
      model: { path: path.resolve(p.modelDir), format },
      runtime: { name: runtime.name, description: runtime.describe() },
      seconds: (performance.now() - start) / 1000,
      tasksFile: { ...info, items: all.length },
      bos,
      limit: p.limit ?? null,
      tasks,
      overall,
    };
  });
}

export async function evaluateModel(p: EvalParams, ctx: JobContext): Promise<EvalReport> {
  if ((p.text === undefined) === (p.tasks === undefined)) throw new Error('evaluate: give exactly one of a text or a tasks file');
  return p.text !== undefined ? perplexityReport({ ...p, text: p.text }, ctx) : tasksReport({ ...p, tasks: p.tasks! }, ctx);
}
