// mlw job export: a fine-tuning (or pre-training) configuration as a job folder (spec.ts) that
// train.py runs under torchrun on any machine with PyTorch. The data goes
// tokenized and masked by our engine (prepareData) with the batch plan of our
// trainer (BatchPlan, the same seed), and a LoRA run's initial adapter as our
// trainer draws it, so the job trains what `mlw finetune` would have.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic';
import { float32Raw, type RawTensor } from '../io/raw-tensor';
import { writeSafetensors } from '../io/safetensors';
import { readModelFolder } from '../folder/kind';
import { exportHf } from '../export/hf';
import { LINEAR_KEYS, linearShapes } from '../model/layout';
import { BatchPlan, learnedTokens, type TokenizedExample } from '../train/batching';
import { FinetuneConfig, type FinetuneInput, type TrainOptions } from '../train/config';
import { adapterConfigJson, ADAPTER_CONFIG, ADAPTER_WEIGHTS, initialLoraA, peftKey } from '../train/lora';
import { prepareData } from '../train/run';
import {
  PretrainConfig,
  corpusSequences,
  corpusTexts,
  prepareBase,
  pretrainOptions,
  splitSequences,
  trainCorpusTokenizer,
  type PretrainInput,
} from '../train/pretrain';
import { quietContext, throwIfCancelled, type JobContext } from '../jobs/job';
import { totalSteps } from '../train/trainer';
import { launchFiles } from './recipes';
import { JOB_FORMAT, JOB_SPEC, type JobExportResult, type JobInit, type JobSpec } from './spec';
import { INIT_STD, residualInitStd } from '../model/init';
import { readConfig } from '../io/checkpoint';

/** The training program every job folder carries. */
export const TRAIN_PROGRAM = path.resolve(import.meta.dirname, '../../resources/job/train.py');

/** ids (I32), learn (U8) and offsets (I64) of a list of examples. */
function exampleTensors(examples: TokenizedExample[]): [string, RawTensor][] {
  const total = examples.reduce((n, e) => n + e.ids.length, 0);
  const ids = new Int32Array(total);
  const learn = new Uint8Array(total);
  const offsets = new BigInt64Array(examples.length + 1);
  let at = 0;
  examples.forEach((e, i) => {
    ids.set(e.ids, at);
    learn.set(e.learn, at);
    at += e.ids.length;
    offsets[i + 1] = BigInt(at);
  });
  return [
    ['ids', { dtype: 'I32', shape: [total], data: new Uint8Array(ids.buffer) }],
    ['learn', { dtype: 'U8', shape: [total], data: learn }],
    ['offsets', { dtype: 'I64', shape: [examples.length + 1], data: new Uint8Array(offsets.buffer) }],
  ];
}

/** The example indices of every micro-batch of every step, [steps, gradAccum, batchSize], −1 where short. */
function planTensor(plan: BatchPlan, steps: number): RawTensor {
  const { gradAccum: G, batchSize: B } = plan;
  const out = new Int32Array(steps * G * B).fill(-1);
  for (let s = 0; s < steps; s++) plan.step(s).forEach((micro, m) => out.set(micro, (s * G + m) * B));
  return { dtype: 'I32', shape: [steps, G, B], data: new Uint8Array(out.buffer) };
}

/** The initial adapter as our trainer draws it (A from the seed, B zero), PEFT layout. */
function initialAdapter(cfg: FinetuneConfig, dir: string, baseDir: string): void {
  const c = readModelFolder(baseDir).config;
  const shapes = linearShapes(c);
  const r = cfg.lora.rank;
  const tensors: [string, RawTensor][] = [];
  for (let b = 0; b < c.numBlocks; b++) {
    for (const key of LINEAR_KEYS) {
      if (!cfg.lora.targets.includes(key)) continue;
      const [nOut, nIn] = shapes[key];
      const a = initialLoraA(cfg.train.seed, b, key, nIn, r); // [in, r]
      const aT = new Float32Array(r * nIn);
      for (let i = 0; i < nIn; i++) for (let j = 0; j < r; j++) aT[j * nIn + i] = a[i * r + j];
      tensors.push([peftKey(b, key, 'A'), float32Raw(aT, [r, nIn])]);
      tensors.push([peftKey(b, key, 'B'), float32Raw(new Float32Array(nOut * r), [nOut, r])]);
    }
  }
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  writeFileAtomic(path.join(dir, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(cfg.lora, baseDir), null, 2) + '\n');
}

/** The absolute job folder `out`, which must not exist or be empty. */
function emptyTarget(out: string): string {
  const dir = path.resolve(out);
  if (fs.existsSync(dir) && fs.readdirSync(dir).length) throw new Error(`${dir}: not empty (a job folder is written into a new or empty folder)`);
  return dir;
}

interface JobContents {
  kind: JobSpec['kind'];
  method: JobSpec['method'];
  lora: JobSpec['lora'];
  train: TrainOptions;
  config: Record<string, unknown>;
  examples: { train: TokenizedExample[]; val: TokenizedExample[] };
  /** What the manifest says the data came from. */
  source: Record<string, unknown>;
  /** A pre-training job whose train.py draws the initial weights. */
  init?: JobSpec['init'];
}

/**
 * The data, plan, job.json, program and recipes of a job whose model/ (and
 * init/) are written. The data goes to `dataDir`; one outside the job folder
 * is linked as its data/ and shared by the jobs of the same data: written by
 * the first (manifest.json last), checked by the others against its manifest.
 */
function writeJob(dir: string, c: JobContents, dataDir = path.join(dir, 'data')): JobExportResult {
  const { train, val } = c.examples;
  const plan = new BatchPlan(train.length, c.train.batchSize, c.train.gradAccum, c.train.seed);
  const steps = totalSteps(c.train, plan);
  const summary = (rows: TokenizedExample[]) => ({
    examples: rows.length,
    tokens: rows.reduce((n, e) => n + e.ids.length, 0),
    learnedTokens: learnedTokens(rows),
  });
  const manifest = {
    train: summary(train),
    val: summary(val),
    steps,
    batchSize: c.train.batchSize,
    gradAccum: c.train.gradAccum,
    seed: c.train.seed,
    source: c.source,
  };
  const manifestText = JSON.stringify(manifest, null, 2) + '\n';
  const manifestFile = path.join(dataDir, 'manifest.json');
  if (!fs.existsSync(manifestFile)) {
    fs.mkdirSync(dataDir, { recursive: true });
    writeSafetensors(path.join(dataDir, 'train.safetensors'), exampleTensors(train));
    if (val.length) writeSafetensors(path.join(dataDir, 'val.safetensors'), exampleTensors(val));
    writeSafetensors(path.join(dataDir, 'plan.safetensors'), [['plan', planTensor(plan, steps)]]);
    writeFileAtomic(manifestFile, manifestText);
  } else if (fs.readFileSync(manifestFile, 'utf8') !== manifestText) {
    throw new Error(`${dataDir}: holds other data than job ${dir} trains on (another seed, split or batch plan)`);
  }
  if (dataDir !== path.join(dir, 'data')) fs.symlinkSync(path.relative(dir, dataDir), path.join(dir, 'data'));
  const spec: JobSpec = {
    format: JOB_FORMAT,
    id: crypto.randomUUID(),
    kind: c.kind,
    createdAt: Date.now(),
    method: c.method,
    lora: c.lora,
    train: c.train,
    totalSteps: steps,
    stepsPerEpoch: plan.stepsPerEpoch,
    config: c.config,
    ...(c.init ? { init: c.init } : {}),
  };
  writeFileAtomic(path.join(dir, JOB_SPEC), JSON.stringify(spec, null, 2) + '\n');
  fs.copyFileSync(TRAIN_PROGRAM, path.join(dir, 'train.py'));
  for (const [name, text] of Object.entries(launchFiles(spec, path.basename(dir)))) writeFileAtomic(path.join(dir, name), text);
  return {
    dir,
    id: spec.id,
    totalSteps: steps,
    trainExamples: train.length,
    valExamples: val.length,
    command: `cd ${path.basename(dir)} && torchrun --nproc_per_node=<GPUs> train.py`,
  };
}

/** Writes the job folder `out` (new or empty) for the fine-tuning configuration `input`, its phases reported to `ctx`. */
export async function exportJob(input: FinetuneInput, out: string, ctx: JobContext = quietContext()): Promise<JobExportResult> {
  const cfg = FinetuneConfig.parse(input);
  cfg.model = path.resolve(cfg.model);
  cfg.data = path.resolve(cfg.data);
  if (cfg.val) cfg.val = path.resolve(cfg.val);
  const dir = emptyTarget(out);
  const kind = readModelFolder(cfg.model).kind;
  if (kind !== 'float') throw new Error(`${cfg.model} is a ${kind} folder; a job trains float weights (merge or convert it first)`);
  ctx.progress({ phase: 'tokenizing the data' });
  const data = prepareData(cfg);
  throwIfCancelled(ctx.signal);
  await exportHf(cfg.model, path.join(dir, 'model'), { dtype: 'float32' }, (fraction, message) =>
    ctx.progress({ phase: `exporting the base: ${message}`, done: Math.round(fraction * 1000), total: 1000 }),
  );
  if (cfg.method === 'lora') {
    fs.mkdirSync(path.join(dir, 'init'));
    initialAdapter(cfg, path.join(dir, 'init'), cfg.model);
  }
  throwIfCancelled(ctx.signal);
  ctx.progress({ phase: 'writing the data shards' });
  return writeJob(dir, {
    kind: 'finetune',
    method: cfg.method,
    lora: cfg.method === 'lora' ? cfg.lora : null,
    train: cfg.train,
    config: cfg,
    examples: data,
    source: { data: cfg.data, sha256: data.trainSet.sha256, val: cfg.val, valFraction: cfg.valFraction, packing: cfg.packing, lossOn: cfg.lossOn },
  });
}

/** One job of exportPretrainJobs: its configuration, its folder, and where its data goes (default: its own data/). */
export interface PretrainJobTarget {
  input: PretrainInput;
  out: string;
  /** A folder shared by the jobs of the same data (seed, split, batch plan), linked as their data/. */
  data?: string;
}

/** What the jobs of one export must share: the tokenizer is trained, and the corpus tokenized, once for all of them. */
const SHARED_KEYS = ['corpus', 'vocabSize', 'seqLen', 'valFraction'] as const;

/**
 * Writes the job folders `jobs[i].out` (new or empty) of pre-training
 * configurations of one corpus, vocabulary and sequence length (a lab's
 * variants × seeds): the tokenizer trained and each model initialised as mlw
 * pretrain does (model/), the corpus cut into its sequences and split alike.
 */
export async function exportPretrainJobs(jobs: PretrainJobTarget[], init: JobInit = 'folder'): Promise<JobExportResult[]> {
  const cfgs = jobs.map((j) => PretrainConfig.parse(j.input));
  const first = cfgs[0];
  cfgs.forEach((c, i) => {
    const differs = SHARED_KEYS.find((key) => JSON.stringify(c[key]) !== JSON.stringify(first[key]));
    if (differs) throw new Error(`${jobs[i].out}: its ${differs} differs from ${jobs[0].out}'s (jobs exported together share one corpus and tokenizer)`);
  });
  const dirs = jobs.map((j) => emptyTarget(j.out));
  const corpora = first.corpus.map(corpusTexts);
  const texts = corpora.flatMap((c) => c.texts);
  const tokenizer = trainCorpusTokenizer(first, texts, quietContext());
  let sequences: TokenizedExample[] | null = null;
  const results: JobExportResult[] = [];
  for (const [i, cfg] of cfgs.entries()) {
    const model = path.join(dirs[i], 'model');
    await prepareBase(cfg, texts, model, quietContext(), init === 'folder', tokenizer);
    sequences ??= corpusSequences(model, texts, first.seqLen);
    const data = jobs[i].data;
    results.push(
      writeJob(
        dirs[i],
        {
          init: init === 'seed' ? { seed: cfg.train.seed, std: INIT_STD, residualStd: residualInitStd(readConfig(model)) } : undefined,
          kind: 'pretrain',
          method: 'full',
          lora: null,
          train: pretrainOptions(cfg),
          config: cfg,
          examples: splitSequences(cfg, sequences),
          source: { corpus: corpora.map((c) => c.source), seqLen: cfg.seqLen, valFraction: cfg.valFraction },
        },
        data ? path.resolve(data) : undefined,
      ),
    );
  }
  return results;
}

/** Writes the job folder `out` (new or empty) for the pre-training configuration `input`. */
export async function exportPretrainJob(input: PretrainInput, out: string, init: JobInit = 'folder'): Promise<JobExportResult> {
  const [result] = await exportPretrainJobs([{ input, out }], init);
  return result;
}
