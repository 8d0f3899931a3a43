// mlw lab run end to end into a real store: a two-variant experiment of a
// few steps is SIGKILLed while its second variant trains; running the lab
// again skips the finished variant (same run, metrics untouched), resumes the
// unfinished one (same run, every step once), and prints a table with both
// rows, their held-out perplexities and their decode latency on ONNX Runtime
// (measured once, then cached) beside the paper's claim.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { corpusTexts } from '../engine/train/pretrain';
import type { LabResult } from '../engine/lab/run';
import { tempDir } from './helpers/train-fixtures';
import { mlwHere, spawnMlw, waitForStep } from './helpers/train-spawn';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('lab-run');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const home = path.join(tmp, 'home');
const corpus = path.join(tmp, 'corpus.txt');
fs.writeFileSync(corpus, corpusTexts('moby-dick').texts.join('\n').slice(0, 60_000));
const heldOut = path.join(tmp, 'held-out.txt');
fs.writeFileSync(heldOut, fs.readFileSync(path.resolve(import.meta.dirname, '../resources/eval/held-out.txt'), 'utf8').slice(0, 3000));
const STEPS = 24;
const shape = { hiddenSize: 32, intermediateSize: 64, numBlocks: 2, numHeads: 2, numKvHeads: 1 };
const budget = { corpus: [corpus], vocabSize: 400, seqLen: 32, batchSize: 4, steps: STEPS, lr: 3e-3, warmupSteps: 2, seeds: [0], evalEvery: 8, saveEvery: 4 };
const experiment = {
  name: 'tiny-pair',
  question: 'Does immediate sharing beat the unshared model of equal storage?',
  paper: {
    source: 'a test',
    says: 'it does',
    expect: [
      { lower: 'immediate', than: 'unshared' },
      { quantDrop: 'w8a8', below: 0.5 },
    ],
  },
  holdEqual: 'storage',
  tolerance: 0,
  quantize: ['w8a8'],
  scales: Object.fromEntries(
    ['tiny', 'small'].map((s) => [
      s,
      {
        budget,
        base: shape,
        variants: [
          { name: 'unshared', label: '2 blocks' },
          { name: 'immediate', label: '2 blocks ×2', delta: { sharing: { strategy: 'immediate', repeats: 2 } } },
        ],
      },
    ]),
  ),
};
const file = path.join(tmp, 'tiny-pair.json');
fs.writeFileSync(file, JSON.stringify(experiment, null, 2));
const args = ['--home', home, 'lab', 'run', file, '--eval-text', heldOut];

function lossPoints(runId: number): { step: number; wall: number }[] {
  const store = openStore({ home, readonly: true });
  try {
    const c = store.metrics.curve(runId, 'loss');
    return c.steps.map((step, i) => ({ step, wall: c.wallTimes[i] }));
  } finally {
    store.close();
  }
}

describe('mlw lab run', () => {
  it('runs a two-variant experiment, resumes it after a kill, and prints both rows', async () => {
    const { child, done } = spawnMlw([...args, '--json']);
    // Run 1 is the first variant; run 2 the second, killed after its first checkpoints.
    await waitForStep(home, 2, 6, done).catch(async (e: Error) => {
      const f = await done;
      throw new Error(`${e.message}: ${f.stderr.slice(-2000)}`);
    });
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');

    const killed = lossPoints(2).map((p) => p.step);
    expect(killed.at(-1)).toBeLessThan(STEPS); // killed mid-way, not after it finished
    const before = lossPoints(1);
    expect(before.map((p) => p.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));

    const r = await mlwHere([...args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as LabResult;
    expect(result.complete).toBe(true);
    expect(result.rows.map((row) => [row.name, row.runs.map((x) => [x.runId, x.status])])).toEqual([
      ['unshared', [[1, 'completed']]],
      ['immediate', [[2, 'completed']]],
    ]);
    for (const row of result.rows) {
      expect(row.ppl!.mean).toBeGreaterThan(1);
      expect(row.ppl!.mean).toBeLessThan(1000);
      expect(Number.isFinite(row.quantized.w8a8!.ppl.mean)).toBe(true);
      // Decode latency of the trained model, on the chat's runtime and saying so.
      expect(row.latencyRuntime).toBe('onnx');
      expect(row.decodeMs!.n).toBe(1);
      expect(row.decodeMs!.mean).toBeGreaterThan(0);
    }
    const latencyFile = path.join(home, 'lab', 'tiny-pair', 'tiny', 'latency.json');
    const latencies = fs.readFileSync(latencyFile, 'utf8');
    expect(Object.entries(JSON.parse(latencies) as Record<string, { runId: number; decodeMs: number }>).map(([k, x]) => [k, x.runId])).toEqual([
      ['unshared-seed0', 1],
      ['immediate-seed0', 2],
    ]);
    expect(result.rows[1].depth).toBe(2 * result.rows[0].depth);
    // Zero-shot accuracy on the bundled set (200 items), with the items' standard error, cached beside evaluations.json.
    for (const row of result.rows) {
      expect(row.zeroShotAcc).toMatchObject({ n: 1, spread: 0 });
      expect(row.zeroShotAcc!.mean).toBeGreaterThanOrEqual(0);
      expect(row.zeroShotStderr).toBeGreaterThan(0);
    }
    const zeroShotFile = path.join(home, 'lab', 'tiny-pair', 'tiny', 'zero-shot.json');
    const zeroShots = fs.readFileSync(zeroShotFile, 'utf8');
    expect(Object.entries(JSON.parse(zeroShots) as Record<string, { runId: number; items: number }>).map(([k, x]) => [k, x.runId, x.items])).toEqual([
      ['unshared-seed0', 1, 200],
      ['immediate-seed0', 2, 200],
    ]);
    expect(result.claims.map((c) => c.agrees).every((a) => ['yes', 'no', 'within noise'].includes(a))).toBe(true);

    // The finished variant was skipped: no new run, its metrics as they were.
    const store = openStore({ home, readonly: true });
    try {
      expect(store.runs.list({ kind: 'pretrain' }).map((x) => x.id)).toEqual([2, 1]);
    } finally {
      store.close();
    }
    expect(lossPoints(1)).toEqual(before);
    // The unfinished one resumed: every step once, in the same run.
    expect(lossPoints(2).map((p) => p.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));

    // Once more as a table: nothing left to train or measure.
    const table = await mlwHere(args);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/\| unshared \| 2 blocks \|.*\| \d+\.\d\d \|/);
    expect(table.stdout).toMatch(/\| immediate \| 2 blocks ×2 \|/);
    expect(table.stdout).toMatch(/\| decode ms \| latency runtime \|/);
    expect(fs.readFileSync(latencyFile, 'utf8')).toBe(latencies); // measured once, then read from latency.json
    expect(table.stdout).toMatch(/\| zero shot acc \| zero shot stderr \|/);
    expect(fs.readFileSync(zeroShotFile, 'utf8')).toBe(zeroShots);
    expect(table.stdout).toContain('**Paper says** (a test): it does');
    expect(table.stdout).toContain('| immediate has a lower held-out perplexity than unshared |');
  }, 900_000);
});
