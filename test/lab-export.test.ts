// mlw lab export / import: every bundled experiment exports at tiny and at
// small as complete job folders sharing their tokenized corpus; a two-variant
// experiment of a few steps is exported, one job run with train.py and the lab
// imported (the other named as not started), then the other run and the lab
// imported again: the table has both variants with their perplexities, every
// run in the store is an imported job (none trained here), and mlw lab run
// afterwards finds them as the variants' completed runs.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { corpusTexts } from '../engine/train/pretrain';
import { LabManifest } from '../engine/lab/export';
import type { LabImportResult } from '../engine/lab/import';
import type { LabResult } from '../engine/lab/run';
import { listExperiments, planVariants, SCALES } from '../engine/lab/experiment';
import { mlwProcess } from './helpers/mlw-process';
import { tempDir } from './helpers/train-fixtures';
import { runJob, torchMissing, torchPython } from './helpers/torch-job';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('lab-export');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const home = path.join(tmp, 'home');

function readManifest(dir: string): LabManifest {
  return LabManifest.parse(JSON.parse(fs.readFileSync(path.join(dir, 'lab.json'), 'utf8')));
}

/** The files each job folder must hold (data/ through its link to the shared data). */
const JOB_FILES = ['job.json', 'train.py', 'README.md', 'job.sbatch', 'sky.yaml', 'model/config.json', 'model/tokenizer.json', 'data/manifest.json'];

describe('mlw lab export: the bundled experiments', () => {
  for (const scale of SCALES) {
    it(`every bundled experiment exports at ${scale}: one complete job per variant × seed, the data once per seed`, async () => {
      for (const { experiment: e } of listExperiments()) {
        const out = path.join(tmp, `${e.name}-${scale}`);
        // Small models' weights are drawn by train.py (--init seed): the folders are checked, not hundreds of MB of weights.
        const r = await mlwProcess([
          '--home',
          home,
          'lab',
          'export',
          e.name,
          '--scale',
          scale,
          '--out',
          out,
          '--init',
          scale === 'small' ? 'seed' : 'folder',
          '--json',
        ]);
        expect(r.code, `${e.name} at ${scale}: ${r.stderr}`).toBe(0);
        const m = readManifest(out);
        const seeds = e.scales[scale].budget.seeds;
        const variants = planVariants(e, scale).map((v) => v.name);
        expect(m.jobs.map((j) => `${j.variant}/${j.seed}`)).toEqual(variants.flatMap((v) => seeds.map((s) => `${v}/${s}`)));
        expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).toContain(`for j in ${m.jobs.map((j) => j.dir).join(' ')}; do`);
        for (const j of m.jobs) {
          const dir = path.join(out, j.dir);
          for (const f of JOB_FILES) expect(fs.existsSync(path.join(dir, f)), `${e.name} ${scale} ${j.dir}/${f}`).toBe(true);
          expect(fs.readlinkSync(path.join(dir, 'data'))).toBe(path.join('..', 'data', `seed${j.seed}`));
          const spec = JSON.parse(fs.readFileSync(path.join(dir, 'job.json'), 'utf8'));
          expect(spec).toMatchObject({ kind: 'pretrain', id: j.id, totalSteps: e.scales[scale].budget.steps, train: { seed: j.seed } });
          expect(spec.config.out).toBe(path.join(home, 'lab', e.name, scale, `${j.variant}-seed${j.seed}`, 'model'));
          expect(fs.existsSync(path.join(dir, 'model', 'model.safetensors'))).toBe(scale === 'tiny');
        }
        expect(fs.readdirSync(path.join(out, 'data')).sort()).toEqual(seeds.map((s) => `seed${s}`).sort());
        fs.rmSync(out, { recursive: true });
      }
    }, 1_800_000);
  }
});

const py = torchPython();
const missing = torchMissing(py);

describe.skipIf(missing !== null)('mlw lab export → train.py → mlw lab import', () => {
  const corpus = path.join(tmp, 'corpus.txt');
  const heldOut = path.join(tmp, 'held-out.txt');
  const STEPS = 10;
  const shape = { hiddenSize: 32, intermediateSize: 64, numBlocks: 2, numHeads: 2, numKvHeads: 1 };
  const budget = { corpus: [corpus], vocabSize: 400, seqLen: 32, batchSize: 4, steps: STEPS, lr: 3e-3, warmupSteps: 2, seeds: [0], evalEvery: 5, saveEvery: 5 };
  const experiment = {
    name: 'tiny-pair',
    question: 'Does immediate sharing beat the unshared model of equal storage?',
    paper: { source: 'a test', says: 'it does', expect: [{ lower: 'immediate', than: 'unshared' }] },
    holdEqual: 'storage',
    tolerance: 0,
    scales: Object.fromEntries(
      SCALES.map((s) => [
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
  const lab = path.join(tmp, 'tiny-pair-lab');
  const pairHome = path.join(tmp, 'pair-home');

  async function importLab(): Promise<LabImportResult> {
    const r = await mlwProcess(['--home', pairHome, 'lab', 'import', lab, '--eval-text', heldOut, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as LabImportResult;
  }

  function storeRuns(): { id: number; status: string; job?: { id: string } }[] {
    const store = openStore({ home: pairHome, readonly: true });
    try {
      return store.runs.list({ kind: 'pretrain' }).map((r) => ({ id: r.id, status: r.status, job: r.config.job as { id: string } | undefined }));
    } finally {
      store.close();
    }
  }

  it('imports the finished jobs as the variants’ runs and prints the table, training nothing', async () => {
    fs.writeFileSync(corpus, corpusTexts('moby-dick').texts.join('\n').slice(0, 30_000));
    fs.writeFileSync(heldOut, fs.readFileSync(path.resolve(import.meta.dirname, '../resources/eval/held-out.txt'), 'utf8').slice(0, 2000));
    fs.writeFileSync(file, JSON.stringify(experiment, null, 2));
    // Exported from another home than the one importing: the runs take this home's variant folders.
    const exported = await mlwProcess(['--home', path.join(tmp, 'export-home'), 'lab', 'export', file, '--scale', 'tiny', '--out', lab]);
    expect(exported.code, exported.stderr).toBe(0);
    const m = readManifest(lab);
    expect(m.jobs.map((j) => j.dir)).toEqual(['unshared-seed0', 'immediate-seed0']);

    runJob(py!, path.join(lab, 'unshared-seed0'));
    const first = await importLab();
    expect(first.jobs.map((j) => [j.dir, j.status])).toEqual([
      ['unshared-seed0', 'imported'],
      ['immediate-seed0', 'not started'],
    ]);
    expect(first.result.complete).toBe(false);
    expect(first.result.rows[0].ppl!.mean).toBeGreaterThan(1);
    expect(first.result.rows[1].ppl).toBeNull();

    runJob(py!, path.join(lab, 'immediate-seed0'));
    const second = await importLab();
    expect(second.jobs.map((j) => j.status)).toEqual(['imported', 'imported']);
    expect(second.jobs[0].runId).toBe(first.jobs[0].runId); // the job imported before is not recorded twice
    const r = second.result;
    expect(r.complete).toBe(true);
    expect(r.rows.map((row) => [row.name, row.runs.map((x) => x.status)])).toEqual([
      ['unshared', ['completed']],
      ['immediate', ['completed']],
    ]);
    for (const row of r.rows) {
      expect(row.ppl!.mean).toBeGreaterThan(1);
      expect(row.ppl!.mean).toBeLessThan(1000);
      expect(row.valLoss!.mean).toBeGreaterThan(0); // the job's validation curve, imported
    }
    expect(r.claims[0].agrees).not.toBe('not measured');
    // Every run in the store is an imported job: none was trained here.
    const runs = storeRuns();
    expect(runs.map((x) => [x.status, x.job?.id]).sort()).toEqual(m.jobs.map((j) => ['completed', j.id]).sort());

    // mlw lab run finds them as the variants' completed runs: the same table, no new run.
    const table = await mlwProcess(['--home', pairHome, 'lab', 'run', file, '--eval-text', heldOut]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/\| unshared \| 2 blocks \|.*\| \d+\.\d\d \|/);
    expect(table.stdout).toMatch(/\| immediate \| 2 blocks ×2 \|.*\| \d+\.\d\d \|/);
    expect(storeRuns()).toEqual(runs);
    const again = JSON.parse((await mlwProcess(['--home', pairHome, 'lab', 'run', file, '--eval-text', heldOut, '--json'])).stdout) as LabResult;
    expect(again.rows.map((row) => row.ppl!.mean)).toEqual(r.rows.map((row) => row.ppl!.mean));
  }, 900_000);
});
