// The exported job trains what the workbench trains: the same 20-step LoRA and
// full configurations give the same loss at every step locally (our engine)
// and through train.py (PyTorch, 1 process, float32) within 1e-4; 2 processes
// (torchrun, gloo) with the same global batch give 1 process's curve within
// 1e-5; a 2-process job (LoRA dropout on) SIGKILLed mid-run and launched again continues its curve exactly.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { quietContext } from '../engine/jobs/job';
import { exportJob, exportPretrainJob } from '../engine/job/export';
import { openStore } from '../engine/store/open';
import { readSafetensors } from '../engine/io/safetensors';
import { toFloat32 } from '../engine/io/raw-tensor';
import type { FinetuneInput } from '../engine/train/config';
import { startFinetune } from '../engine/train/run';
import { pretrain, type PretrainInput } from '../engine/train/pretrain';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { jobCurve, jobStep, runJob, startJob, torchMissing, torchPython } from './helpers/torch-job';

process.env.MLW_THREADS ??= '1';
const py = torchPython();
const missing = torchMissing(py);
const tmp = tempDir('job-parity');
const data = writeJsonl(path.join(tmp, 'train.jsonl'), arithmeticChats(48));
const train = { maxSteps: 20, batchSize: 4, gradAccum: 2, lr: 5e-3, warmupSteps: 3, seed: 7, evalEvery: 10, saveEvery: 10, saveEveryMinutes: 0 };

const CONFIGS: Record<string, Omit<FinetuneInput, 'data'>> = {
  'LoRA (rsLoRA, q/v/gate) of tiny-gqa': {
    model: tinyModelDir(path.join(tmp, 'gqa'), 'tiny-gqa'),
    method: 'lora',
    lora: { rank: 4, alpha: 8, targets: ['q', 'v', 'gate'], rslora: true },
    train: { ...train, decay: 'cosine' },
  },
  'full fine-tuning of the layer-shared tiny-ls-reverse': {
    model: tinyModelDir(path.join(tmp, 'ls'), 'tiny-ls-reverse'),
    method: 'full',
    train: { ...train, decay: 'linear', lr: 2e-3 },
  },
};

/** The local run's curves (our engine on TensorFlow.js, the reference runtime), recorded in a store of its own. */
async function localCurves(name: string, cfg: FinetuneInput): Promise<{ loss: number[]; val: number[] }> {
  const store = openStore({ home: path.join(tmp, `home-${name}`) });
  try {
    const out = await startFinetune(store, { ...cfg, runtime: 'tfjs' }, quietContext());
    expect(out.status).toBe('completed');
    return { loss: store.metrics.curve(out.runId, 'loss').values, val: store.metrics.curve(out.runId, 'val_loss').values };
  } finally {
    store.close();
  }
}

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

describe.skipIf(missing !== null)('an exported job trains as the workbench does', () => {
  beforeAll(async () => {
    await initBackend();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it.each(Object.keys(CONFIGS))('%s: the same loss at every step locally and in the job (1 process), and 2 processes give 1 process’s curve', async (name) => {
    const cfg = { ...CONFIGS[name], data };
    const tag = name.split(' ')[0];
    const local = await localCurves(tag, cfg);
    const one = path.join(tmp, `${tag}-job1`);
    const two = path.join(tmp, `${tag}-job2`);
    await exportJob(cfg, one);
    fs.cpSync(one, two, { recursive: true });
    runJob(py!, one, 1);
    runJob(py!, two, 2);
    const job = jobCurve(one);
    expect(job).toHaveLength(20);
    expect(local.loss).toHaveLength(20);
    expect(job[19]).toBeLessThan(job[0]); // it learned
    const dLocal = maxDiff(job, local.loss);
    const dVal = maxDiff(jobCurve(one, 'val_loss'), local.val);
    const dProcs = maxDiff(jobCurve(two), job);
    console.log(
      `${name}: max |Δloss| local vs job ${dLocal.toExponential(2)}, validation ${dVal.toExponential(2)}; 1 vs 2 processes ${dProcs.toExponential(2)}`,
    );
    expect(dLocal).toBeLessThan(1e-4);
    expect(jobCurve(one, 'val_loss')).toHaveLength(local.val.length);
    expect(dVal).toBeLessThan(1e-4);
    expect(jobCurve(two)).toHaveLength(20);
    expect(dProcs).toBeLessThan(1e-5);
    expect(JSON.parse(fs.readFileSync(path.join(two, 'machine.json'), 'utf8'))).toMatchObject({ worldSize: 2, device: 'cpu' });
    for (const dir of [one, two]) expect(fs.readdirSync(path.join(dir, 'checkpoints')).sort()).toEqual(['checkpoint-10', 'checkpoint-20']);
  });

  it('pre-training: the same loss at every step locally and in the job', async () => {
    const corpus = path.join(tmp, 'corpus.txt');
    fs.writeFileSync(
      corpus,
      arithmeticChats(400)
        .map((c) => JSON.stringify(c))
        .join(' '),
    );
    // seed 1: randomModel draws its first tensor (the embedding) unseeded with seed 0
    const cfg: PretrainInput = {
      corpus: [corpus],
      out: path.join(tmp, 'pretrained'),
      vocabSize: 400,
      hiddenSize: 32,
      intermediateSize: 64,
      numBlocks: 2,
      numHeads: 2,
      numKvHeads: 1,
      sharing: { strategy: 'immediate', repeats: 2 },
      seqLen: 32,
      train: { maxSteps: 12, warmupSteps: 2, batchSize: 4, gradAccum: 2, seed: 1, evalEvery: 6, saveEvery: 6 },
      runtime: 'tfjs',
    };
    const store = openStore({ home: path.join(tmp, 'home-pretrain') });
    let local: number[];
    try {
      const out = await pretrain(store, cfg, quietContext());
      local = store.metrics.curve(out.runId, 'loss').values;
    } finally {
      store.close();
    }
    const dir = path.join(tmp, 'pretrain-job');
    await exportPretrainJob(cfg, dir);
    runJob(py!, dir, 1);
    const job = jobCurve(dir);
    expect(job).toHaveLength(12);
    const d = maxDiff(job, local);
    console.log(`pre-training: max |Δloss| local vs job ${d.toExponential(2)}`);
    expect(d).toBeLessThan(1e-4);
  });

  it('a pre-training job exported with --init seed draws its weights in train.py: the distributions of ours, the same on 1 and 2 processes', async () => {
    const corpus = path.join(tmp, 'drawn-corpus.txt');
    fs.writeFileSync(
      corpus,
      arithmeticChats(200)
        .map((c) => JSON.stringify(c))
        .join(' '),
    );
    const cfg: PretrainInput = {
      corpus: [corpus],
      out: path.join(tmp, 'drawn'),
      vocabSize: 400,
      hiddenSize: 64,
      intermediateSize: 128,
      numBlocks: 2,
      numHeads: 2,
      numKvHeads: 1,
      seqLen: 32,
      train: { maxSteps: 6, warmupSteps: 2, batchSize: 4, gradAccum: 1, seed: 3, evalEvery: 3, saveEvery: 3 },
    };
    const [drawn, folder, twice] = ['job-drawn', 'job-folder', 'job-drawn-2'].map((n) => path.join(tmp, n));
    await exportPretrainJob(cfg, drawn, 'seed');
    await exportPretrainJob(cfg, folder, 'folder');
    expect(fs.existsSync(path.join(drawn, 'model', 'model.safetensors'))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(drawn, 'job.json'), 'utf8')).init).toMatchObject({ seed: 3, std: 0.02 });
    fs.cpSync(drawn, twice, { recursive: true });
    runJob(py!, drawn, 1);
    runJob(py!, twice, 2);
    // The drawn weights: every tensor of ours, N(0, std) truncated at 2 std (o/down at the residual std), norms 1.
    const ours = readSafetensors(path.join(folder, 'model', 'model.safetensors')).tensors;
    const theirs = readSafetensors(path.join(drawn, 'model', 'model.safetensors')).tensors;
    expect([...theirs.keys()].sort()).toEqual([...ours.keys()].sort());
    const residualStd = JSON.parse(fs.readFileSync(path.join(drawn, 'job.json'), 'utf8')).init.residualStd as number;
    for (const [name, t] of theirs) {
      const x = toFloat32(t, name);
      const std = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length);
      const want = name.endsWith('norm.weight') ? 1 : (name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight') ? residualStd : 0.02) * 0.88; // std of N(0,1) cut at ±2
      expect(std, name).toBeCloseTo(want, name.endsWith('norm.weight') ? 6 : 2.5);
      if (!name.endsWith('norm.weight')) expect(Math.max(...x.map(Math.abs)), name).toBeLessThanOrEqual((want / 0.88) * 2 + 1e-7);
    }
    // Same start, so about the same first loss (ln 400 ≈ 5.99 for both), and the drawn job is deterministic across world sizes.
    runJob(py!, folder, 1);
    expect(Math.abs(jobCurve(drawn)[0] - jobCurve(folder)[0])).toBeLessThan(0.05);
    expect(maxDiff(jobCurve(twice), jobCurve(drawn))).toBeLessThan(1e-5);
  });

  it('a 2-process job (LoRA dropout on) SIGKILLed mid-run and launched again continues its curve exactly', async () => {
    const cfg: FinetuneInput = {
      ...CONFIGS['LoRA (rsLoRA, q/v/gate) of tiny-gqa'],
      data,
      lora: { rank: 4, alpha: 8, targets: ['q', 'v', 'gate'], dropout: 0.1 },
      train: { ...train, maxSteps: 100, saveEvery: 5, evalEvery: 50 },
    };
    const whole = path.join(tmp, 'kill-whole');
    const killed = path.join(tmp, 'kill-killed');
    await exportJob(cfg, whole);
    fs.cpSync(whole, killed, { recursive: true });
    runJob(py!, whole, 2);

    const child = startJob(py!, killed, 2);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    while (jobStep(killed) < 12) {
      expect(child.exitCode, 'the job ended before it could be killed').toBeNull();
      await new Promise((r) => setTimeout(r, 20));
    }
    process.kill(-child.pid!, 'SIGKILL'); // torchrun and its workers
    await exited;
    const at = jobStep(killed);
    expect(at).toBeLessThan(100);
    expect(fs.existsSync(path.join(killed, 'done.json'))).toBe(false);
    runJob(py!, killed, 2);
    const curve = jobCurve(killed);
    expect(curve).toHaveLength(100);
    console.log(`killed at step ${at}, relaunched: max |Δloss| vs uninterrupted ${maxDiff(curve, jobCurve(whole)).toExponential(2)}`);
    expect(curve).toEqual(jobCurve(whole));
    expect(jobCurve(killed, 'val_loss')).toEqual(jobCurve(whole, 'val_loss'));
  });
});
