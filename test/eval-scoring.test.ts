// Evaluation against the golden tiny model, on both runtimes: continuation
// log-likelihoods (one forward pass over context + continuation each) and
// sliding-window perplexity equal what the golden logits of Hugging Face
// transformers give; multiple-choice items built from those logits have a
// known acc and acc_norm; the job's reports are recorded in the store.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { evaluateModel } from '../engine/eval/job';
import { fitContext, loglikelihoods } from '../engine/eval/loglikelihood';
import { slidingPerplexity, slidingWindows } from '../engine/eval/perplexity';
import { recordEvaluation, resolveEvalTarget } from '../engine/eval/record';
import { EvalReport, type PerplexityReport, type TasksReport } from '../engine/eval/report';
import { loadModel } from '../engine/io/checkpoint';
import { quietContext } from '../engine/jobs/job';
import type { InferenceRuntime, RuntimeName } from '../engine/runtime/runtime';
import { openStore } from '../engine/store/open';
import { FIXTURES, goldenDir, goldenExpected, goldenTensors } from './helpers/golden';
import { tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { createRuntime } from './helpers/model-runtime';

const RUNTIMES: RuntimeName[] = ['tfjs', 'onnx'];

// Golden row 0 of tiny-gqa: 24 token ids and the logits HF computed for them.
const IDS = goldenExpected('tiny-gqa').inputs.input_ids[0];
const LOGITS = goldenTensors('tiny-gqa').get('logits').values;
const V = 512;

/** log p(token | ids[0..t]) from the golden logits, in float64. */
function goldenLogProb(t: number, token: number): number {
  const row = LOGITS.subarray(t * V, (t + 1) * V);
  const max = Math.max(...row);
  const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
  return row[token] - max - Math.log(sum);
}

/** Summed golden log-likelihood of ids[k+1 .. k+m] given ids[0..k]. */
const goldenRun = (k: number, m: number): number => Array.from({ length: m }, (_, j) => goldenLogProb(k + j, IDS[k + 1 + j])).reduce((a, b) => a + b);

/** The least and the most likely next token after ids[0..k]. */
function extremes(k: number): { least: number; most: number } {
  const lp = Array.from({ length: V }, (_, tok) => goldenLogProb(k, tok));
  return { least: lp.indexOf(Math.min(...lp)), most: lp.indexOf(Math.max(...lp)) };
}

beforeAll(async () => {
  await initBackend();
});

describe.each(RUNTIMES)('%s runtime', (name) => {
  let runtime: InferenceRuntime;

  beforeAll(async () => {
    ({ runtime } = await createRuntime(loadModel(goldenDir('tiny-gqa')).model, { runtime: name }));
  });

  afterAll(async () => {
    await runtime.dispose();
  });

  it('log-likelihoods of continuations equal the golden logits, for choices that share a context too', async () => {
    const k = 9;
    const context = IDS.slice(0, k + 1);
    const { least, most } = extremes(k);
    const requests = [
      { context, continuation: IDS.slice(k + 1, k + 4) }, // the golden text goes on: three tokens along known logits
      { context, continuation: [least] },
      { context, continuation: [most] },
      { context: IDS.slice(0, 5), continuation: IDS.slice(5, 9) },
      { context, continuation: IDS.slice(k + 1, k + 4) }, // again: the same sum
    ];
    const lls = await loglikelihoods(runtime, requests, new AbortController().signal);
    const expected = [goldenRun(k, 3), goldenLogProb(k, least), goldenLogProb(k, most), goldenRun(4, 4), goldenRun(k, 3)];
    lls.forEach((ll, i) => expect(Math.abs(ll - expected[i])).toBeLessThan(5e-4));
  });

  it('perplexity in one window equals the golden loss of the sequence', async () => {
    const r = await slidingPerplexity(runtime, IDS, 24, 23, quietContext());
    const nll = -goldenRun(0, IDS.length - 1);
    expect(r.tokens).toBe(23);
    expect(r.windows).toBe(1);
    expect(Math.abs(r.nll - nll)).toBeLessThan(2e-3);
    expect(r.ppl).toBeCloseTo(Math.exp(nll / 23), 3);
  });

  it('sliding windows score every token once, with the context the window gives it', async () => {
    // 21 tokens, window 5, stride 4: chunks ids[0..5), ids[4..9), …, ids[16..21), each scoring the tokens after its first
    const ids = IDS.slice(0, 21);
    const chunks = await slidingPerplexity(runtime, ids, 5, 4, quietContext());
    let nll = 0;
    for (let b = 0; b < 20; b += 4) nll += (await runtime.score(ids.slice(b, b + 5))).nll;
    expect([chunks.tokens, chunks.windows]).toEqual([20, 5]);
    expect(chunks.nll).toBeCloseTo(nll, 4);
    // with 24 tokens the last window reaches back to stay full: ids[19..24) scores 21, 22, 23
    const ragged = await slidingPerplexity(runtime, IDS, 5, 4, quietContext());
    const tail = (await runtime.score(IDS.slice(19, 24))).logprobs.slice(1);
    expect(ragged.nll).toBeCloseTo(nll - tail.reduce((a, b) => a + b), 4);
    // window 2, stride 1: every token predicted from the one before it alone
    const bigrams = await slidingPerplexity(runtime, IDS, 2, 1, quietContext());
    let bigramNll = 0;
    for (let t = 1; t < IDS.length; t++) bigramNll += (await runtime.score([IDS[t - 1], IDS[t]])).nll;
    expect(bigrams.windows).toBe(23);
    expect(bigrams.nll).toBeCloseTo(bigramNll, 4);
  });
});

describe('windows and truncation', () => {
  it('plans windows that cover every token once', () => {
    expect(slidingWindows(10, 5, 3)).toEqual([
      { begin: 0, end: 5, firstScored: 1 },
      { begin: 3, end: 8, firstScored: 5 },
      { begin: 5, end: 10, firstScored: 8 },
    ]);
    expect(slidingWindows(4, 8, 7)).toEqual([{ begin: 0, end: 4, firstScored: 1 }]);
    expect(() => slidingWindows(10, 5, 5)).toThrow('stride 5: must be between 1 and the window − 1 (4)');
    expect(() => slidingWindows(1, 5, 4)).toThrow('perplexity needs at least 2 tokens, got 1');
  });

  it('cuts long contexts from the left so that context and continuation fit, as the harness does', () => {
    const context = Array.from({ length: 300 }, (_, i) => i);
    expect(fitContext({ context, continuation: [1, 2, 3] }, 256)).toEqual(context.slice(300 - 254));
    expect(fitContext({ context: [5], continuation: [1] }, 256)).toEqual([5]);
    expect(() => fitContext({ context, continuation: new Array(257).fill(1) }, 256)).toThrow('a continuation of 257 tokens exceeds');
  });
});

describe('the evaluation job', () => {
  const dir = tempDir('eval-job');
  const home = path.join(dir, 'home');

  it('multiple choice from token ids: acc and acc_norm are what the golden logits say, per task and overall', async () => {
    const k = 9;
    const context = IDS.slice(0, k + 1);
    const { least, most } = extremes(k);
    const three = IDS.slice(k + 1, k + 4);
    // The crafted item: one unlikely token beats three likely ones on the sum, not per token.
    const sum3 = goldenRun(k, 3);
    expect(sum3).toBeLessThan(goldenLogProb(k, least));
    expect(goldenLogProb(k, least)).toBeLessThan(sum3 / 3);
    const file = writeJsonl(path.join(dir, 'ids.jsonl'), [
      { task: 'a', context_ids: context, choices_ids: [[most], [least]], gold: 0 }, // right
      { task: 'a', context_ids: context, choices_ids: [[least], [most]], gold: 0 }, // wrong
      { task: 'b', context_ids: context, choices_ids: [[least], three], gold: 1 }, // acc wrong, acc_norm right
    ]);
    for (const runtime of RUNTIMES) {
      const report = (await evaluateModel({ modelDir: goldenDir('tiny-gqa'), tasks: file, runtime }, quietContext())) as TasksReport;
      expect(report.runtime.name).toBe(runtime);
      expect(report.tasks).toEqual([
        { task: 'a', items: 2, acc: 0.5, accStderr: 0.5, accNorm: 0.5, accNormStderr: 0.5 },
        { task: 'b', items: 1, acc: 0, accStderr: null, accNorm: 1, accNormStderr: null },
      ]);
      expect(report.overall).toMatchObject({ items: 3, acc: 1 / 3, accNorm: 2 / 3 });
      expect(report.overall.accStderr).toBeCloseTo(Math.sqrt(1 / 3 / 3), 12);
      expect(report.tasksFile).toMatchObject({ path: file, items: 3, bytes: fs.statSync(file).size });
    }
  });

  it('refuses token ids outside the vocabulary and text items without a tokenizer, naming the line', async () => {
    const ids = writeJsonl(path.join(dir, 'big.jsonl'), [{ task: 'a', context_ids: [1], choices_ids: [[2], [600]], gold: 0 }]);
    await expect(evaluateModel({ modelDir: goldenDir('tiny-gqa'), tasks: ids }, quietContext())).rejects.toThrow(
      `${ids}:1: token id 600 is outside the model's vocabulary (size 512)`,
    );
    const text = writeJsonl(path.join(dir, 'text.jsonl'), [{ task: 'a', context: 'Q', choices: ['x', 'y'], gold: 0 }]);
    await expect(evaluateModel({ modelDir: goldenDir('tiny-gqa'), tasks: text }, quietContext())).rejects.toThrow(/text items\) needs the model's tokenizer/);
  });

  it('perplexity of a text across windows stays close to the whole-context value', async () => {
    const model = tinyModelDir(dir);
    const text = path.join(FIXTURES, 'eval', 'text.txt');
    const run = (window?: number, stride?: number) =>
      evaluateModel({ modelDir: model, text, window, stride, runtime: 'onnx' }, quietContext()) as Promise<PerplexityReport>;
    const [full, overlapping, small] = [await run(), await run(256, 64), await run(32, 16)];
    expect(full.window).toBe(256); // the model's context
    expect(full.stride).toBe(255);
    expect(full.windows).toBeGreaterThan(1);
    for (const r of [overlapping, small]) {
      expect(r.tokens).toBe(full.tokens);
      expect(Math.abs(Math.log(r.ppl / full.ppl))).toBeLessThan(0.1);
    }
    expect(small.windows).toBe(Math.ceil((full.tokens - 31) / 16) + 1);
    expect(full.ppl).toBeGreaterThan(1);
    expect(full.ppl).toBeLessThan(2 * 512);
  });

  it('records reports linked to the model, a recorded model by id or name, or a checkpoint and its run', async () => {
    const store = openStore({ home });
    try {
      const model = tinyModelDir(path.join(dir, 'recorded'));
      const text = path.join(FIXTURES, 'eval', 'text.txt');
      const report = await evaluateModel({ modelDir: model, text, window: 64, runtime: 'tfjs' }, quietContext());
      expect(() => EvalReport.parse(report)).not.toThrow();

      // a folder the store does not know becomes an imported model
      const first = recordEvaluation(store, report, resolveEvalTarget(store, model));
      const row = store.models.get(first.modelId!);
      expect(row).toMatchObject({ source: 'imported', path: model });
      expect(store.reports.list({ kind: 'evaluation', modelId: row.id })[0].body).toEqual(JSON.parse(JSON.stringify(report)));
      // by folder, id or name it is the same model now
      for (const ref of [model, String(row.id), row.name]) expect(resolveEvalTarget(store, ref)).toMatchObject({ dir: model, modelId: row.id });
      expect(() => resolveEvalTarget(store, 'nothing-here')).toThrow(`"nothing-here" is not a model folder, nor the id or name of a model in ${home}`);

      // a checkpoint folder links the checkpoint and its run
      const run = store.runs.create({ kind: 'finetune', modelId: row.id });
      const ckpt = await store.checkpoints.writeAndRecord(run.id, 10, 'full', (tmp) => {
        for (const f of fs.readdirSync(model)) fs.copyFileSync(path.join(model, f), path.join(tmp, f));
      });
      const target = resolveEvalTarget(store, ckpt.path);
      expect(target).toEqual({ dir: ckpt.path, modelId: null, checkpointId: ckpt.id, runId: run.id });
      const stored = recordEvaluation(store, report, target);
      expect(stored).toMatchObject({ kind: 'evaluation', modelId: null, checkpointId: ckpt.id, runId: run.id });
      expect(store.models.list()).toHaveLength(1);
    } finally {
      store.close();
    }
  });
});
