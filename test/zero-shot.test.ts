// Zero-shot multiple choice end to end: the bundled set is what its generator
// makes (byte for byte, from the held-out text only); text items are scored as
// the sum of their tokens' log-probabilities, checked against the same sum
// read token by token from the KV cache on the tiny golden model; a user's
// harness-style file (query / label, no task) is read and its errors name
// file:line; the default model beats a random-weight model of its shape on the
// bundled set by more than the measured noise; the lab caches its
// measurement beside evaluations.json, per run and tasks file.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { buildHeldOutChoice, HELD_OUT_CHOICE_PATH, HELD_OUT_TEXT, heldOutChoiceFile, heldOutDocuments } from '../engine/eval/held-out-choice';
import { evaluateModel } from '../engine/eval/job';
import { logProbAt } from '../engine/eval/loglikelihood';
import { scoreItems, type EncodedItem } from '../engine/eval/multiple-choice';
import type { TasksReport } from '../engine/eval/report';
import { encodeItem, readTasks } from '../engine/eval/tasks';
import { readConfig, saveModel } from '../engine/io/checkpoint';
import { quietContext } from '../engine/jobs/job';
import { Measurements } from '../engine/lab/measurements';
import { MeasuredZeroShot, modelZeroShot, zeroShotTasks } from '../engine/lab/zero-shot';
import { randomModel } from '../engine/model/init';
import { openRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { loadTokenizer } from '../engine/tokenizer/tokenizer';
import type { InferenceRuntime, RuntimeName } from '../engine/runtime/runtime';
import { tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';

const tmp = tempDir('zero-shot');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend();
});

describe('the bundled set', () => {
  const text = fs.readFileSync(HELD_OUT_TEXT, 'utf8');

  it('is what the generator makes from the held-out text, and the seed decides it', () => {
    expect(fs.readFileSync(HELD_OUT_CHOICE_PATH, 'utf8')).toBe(heldOutChoiceFile(text));
    const docs = heldOutDocuments(text);
    expect(buildHeldOutChoice(docs, { seed: 7, items: 20 })).toEqual(buildHeldOutChoice(docs, { seed: 7, items: 20 }));
    expect(buildHeldOutChoice(docs, { seed: 8, items: 20 })).not.toEqual(buildHeldOutChoice(docs, { seed: 7, items: 20 }));
  });

  it('holds 100 items of each task, four distinct choices, the true one from the held-out text', () => {
    const items = readTasks(HELD_OUT_CHOICE_PATH);
    const flat = text.replace(/\s+/g, ' ');
    const perTask = new Map<string, number>();
    for (const { row } of items) {
      if (!('choices' in row)) throw new Error('expected a context with choices');
      perTask.set(row.task, (perTask.get(row.task) ?? 0) + 1);
      expect(new Set(row.choices).size).toBe(4);
      const truth = row.task === 'held-out-cloze' ? row.choices[row.gold] : `${row.context} ${row.choices[row.gold]}`;
      expect(flat).toContain(truth);
      expect(flat).toContain(row.context);
      if (row.task === 'held-out-cloze') {
        // a distractor is the sentence with one word swapped
        const gold = row.choices[row.gold].split(' ');
        for (const c of row.choices) expect(c.split(' ').filter((w, i) => w !== gold[i]).length).toBeLessThanOrEqual(1);
      }
    }
    expect([...perTask]).toEqual([
      ['held-out-cloze', 100],
      ['held-out-next-word', 100],
    ]);
    // the answer's place is drawn: every position holds it sometimes
    const golds = items.map(({ row }) => row.gold);
    for (let g = 0; g < 4; g++) expect(golds.filter((x) => x === g).length).toBeGreaterThan(25);
  });
});

describe('scoring text items', () => {
  /** Summed log p(continuation | context), read token by token from the KV cache (not the one-pass score the engine uses). */
  async function byCache(runtime: InferenceRuntime, context: number[], continuation: number[]): Promise<number> {
    const cache = runtime.newCache();
    try {
      let logits = await runtime.nextLogits(context, cache);
      let sum = 0;
      for (const id of continuation) {
        sum += logProbAt(logits, id);
        logits = await runtime.nextLogits([id], cache);
      }
      return sum;
    } finally {
      cache.dispose();
    }
  }

  it.each<RuntimeName>(['tfjs', 'onnx'])('sums the choice tokens’ log-probabilities (%s), reading harness names and the file’s task', async (name) => {
    const model = tinyModelDir(path.join(tmp, name));
    const file = writeJsonl(path.join(tmp, `sea-${name}.jsonl`), [
      { query: 'The whale is', choices: ['white', 'blue', 'a ship'], label: 0 },
      { context: 'Call me', choices: ['Ishmael.', 'Ahab.'], gold: 1 },
    ]);
    const tok = loadTokenizer(model);
    const lines = readTasks(file);
    expect(lines.map((l) => l.row.task)).toEqual([`sea-${name}`, `sea-${name}`]);
    const items: EncodedItem[] = lines.map(({ row, line }) => ({
      task: row.task,
      line,
      gold: row.gold,
      choices: encodeItem(row, tok, false, `${file}:${line}`),
    }));
    const { runtime } = await openRuntime(readModelFolder(model), { runtime: name });
    try {
      const scores = await scoreItems(runtime, items, quietContext());
      for (const [k, item] of items.entries()) {
        const expected = await Promise.all(item.choices.map((c) => byCache(runtime, c.context, c.continuation)));
        scores[k].loglikelihoods.forEach((ll, i) => expect(Math.abs(ll - expected[i])).toBeLessThan(1e-3));
        const best = expected.indexOf(Math.max(...expected));
        const bestNorm = expected.map((e, i) => e / item.choices[i].normLength).reduce((b, x, i, a) => (x > a[b] ? i : b), 0);
        expect([scores[k].pred, scores[k].predNorm]).toEqual([best, bestNorm]);
      }
      // " white" after "The whale is": the delimiter and the answer's characters, one token each in the tiny tokenizer
      expect(items[0].choices[0].continuation.length).toBe(' white'.length);
      expect(items[0].choices.map((c) => c.normLength)).toEqual([5, 4, 6]);
    } finally {
      await runtime.dispose();
    }
  });

  it('refuses a bad line of a user’s file naming the file and line', async () => {
    const file = writeJsonl(path.join(tmp, 'bad.jsonl'), [
      { query: 'Q', choices: ['a', 'b'], label: 1 },
      { query: 'Q', context: 'Q', choices: ['a', 'b'], gold: 0 },
    ]);
    expect(() => readTasks(file)).toThrow(`${file}:2: give "context" or "query", not both`);
    const late = writeJsonl(path.join(tmp, 'late.jsonl'), [{ query: 'Q', choices: ['a', 'b'], label: 0 }, '', { query: 'Q', choices: ['a', 'b'], label: 2 }]);
    await expect(evaluateModel({ modelDir: tinyModelDir(path.join(tmp, 'late')), tasks: late }, quietContext())).rejects.toThrow(
      `${late}:3: "gold": gold is not the index of a choice`,
    );
  });
});

describe('the bundled set tells models apart', () => {
  it('the default model beats a random-weight model of its shape by more than the noise', async () => {
    const src = path.resolve(import.meta.dirname, '../resources/default-model');
    const random = path.join(tmp, 'random-model');
    await saveModel(randomModel(readConfig(src), 1), random);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(src, f), path.join(random, f));
    // 40 items of each task keep the test short; the whole set says 65.5% ± 3.4 vs 20.5% ± 2.9 (resources/eval/README.md)
    const run = async (modelDir: string) =>
      (await evaluateModel({ modelDir, tasks: HELD_OUT_CHOICE_PATH, limit: 40, runtime: 'onnx' }, quietContext())) as TasksReport;
    const [trained, untrained] = [(await run(src)).overall, (await run(random)).overall];
    expect([trained.items, untrained.items]).toEqual([80, 80]);
    const noise = Math.hypot(trained.accStderr!, untrained.accStderr!);
    expect(trained.acc - untrained.acc).toBeGreaterThan(3 * noise);
    expect(trained.acc - 0.25).toBeGreaterThan(3 * trained.accStderr!); // above chance
    expect(Math.abs(untrained.acc - 0.25)).toBeLessThan(3 * untrained.accStderr!); // at chance
  }, 600_000);
});

describe('the lab’s zero-shot measurements', () => {
  it('measures a run once per tasks file and keeps it in zero-shot.json', async () => {
    const model = tinyModelDir(path.join(tmp, 'lab'));
    const file = path.join(tmp, 'lab', 'zero-shot.json');
    const tasksFile = writeJsonl(path.join(tmp, 'lab', 'tasks.jsonl'), [{ task: 't', context_ids: [1, 5], choices_ids: [[7], [9, 10]], gold: 0 }]);
    const tasks = zeroShotTasks(tasksFile);
    const open = () => new Measurements(file, MeasuredZeroShot);
    // as runExperiment asks: measured on this run and this tasks file
    const of = (runId: number, sha256: string) => (r: MeasuredZeroShot) => r.runId === runId && r.tasksSha256 === sha256;
    const measure = () => modelZeroShot(model, 3, tasks.file, 'onnx', quietContext());
    // nothing to measure with (a stopped or read-only lab run): nothing new
    expect(await open().get('a-seed0', of(3, tasks.sha256), null)).toBeNull();
    const measured = await open().get('a-seed0', of(3, tasks.sha256), measure);
    expect(measured).toMatchObject({ runId: 3, tasksSha256: tasks.sha256, items: 1, accStderr: null, tasks: { t: measured!.acc } });
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ 'a-seed0': measured });
    // kept for the same run and file; a retrained run or another file is measured again
    expect(await open().get('a-seed0', of(3, tasks.sha256), null)).toEqual(measured);
    expect(await open().get('a-seed0', of(4, tasks.sha256), null)).toBeNull();
    expect(await open().get('a-seed0', of(3, '0'.repeat(64)), null)).toBeNull();
    // a damaged record is measured again
    fs.writeFileSync(file, '{"a-seed0": {"runId": "x"}}');
    expect(await open().get('a-seed0', () => true, null)).toBeNull();
    expect(() => zeroShotTasks(path.join(tmp, 'missing.jsonl'))).toThrow('zero-shot tasks file');
  });
});
