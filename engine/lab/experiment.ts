// A lab experiment as data (resources/lab/*.json): a question, what the
// MobileLLM paper reports about it, and per scale (tiny: a laptop; small: a
// GPU job) a shared budget, a base shape and the variants, each a delta
// against the base. Every variant becomes one pre-training run
// (engine/train/pretrain.ts) under the same budget; `holdEqual` names what the
// variants keep equal (parameters: unique parameters; storage: the same;
// depth: effective layers), checked within `tolerance` when the file is read.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { countParams, effectiveDepth, HIDDEN_ACTS, type MobileLLMConfig } from '../model/config';
import { SHARING_STRATEGIES } from '../model/sharing';
import { QUANT_METHODS } from '../quant/spec';
import type { PretrainInput } from '../train/pretrain';
import { RESOURCES } from '../server/resources';
import { LabScale } from './result';

export const LAB_DIR = path.join(RESOURCES, 'lab');
export const SCALES = LabScale.options;
export type Scale = (typeof SCALES)[number];

const int = z.number().int();
const name = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes');

const Sharing = z.strictObject({ strategy: z.enum(SHARING_STRATEGIES), repeats: int.min(1) });

/** The architecture keys a variant may change. */
const Shape = z.strictObject({
  hiddenSize: int.positive(),
  intermediateSize: int.positive(),
  numBlocks: int.positive(),
  numHeads: int.positive(),
  numKvHeads: int.positive(),
  /** The output head reuses the input embedding. */
  shareEmbedding: z.boolean().default(true),
  sharing: Sharing.default({ strategy: 'none', repeats: 1 }),
  /** The gated MLP's activation (transformers' hidden_act): silu (SwiGLU), relu, gelu, gelu_pytorch_tanh. */
  hiddenAct: z.enum(HIDDEN_ACTS).default('silu'),
});
export type Shape = z.infer<typeof Shape>;

const Budget = z.strictObject({
  corpus: z.array(z.string()).min(1),
  vocabSize: int.min(300),
  seqLen: int.min(16),
  batchSize: int.positive(),
  gradAccum: int.positive().default(1),
  steps: int.positive(),
  lr: z.number().positive(),
  warmupSteps: int.min(0),
  /** One run per seed per variant; the table shows the mean ± spread. */
  seeds: z.array(int.min(0)).min(1),
  evalEvery: int.min(0),
  saveEvery: int.min(0),
});
export type Budget = z.infer<typeof Budget>;

const Variant = z.strictObject({
  name,
  /** What the variant is, for the table. */
  label: z.string().min(1),
  delta: Shape.partial().default({}),
});

const ScalePlan = z.strictObject({ budget: Budget, base: Shape, variants: z.array(Variant).min(2) });

/** What the paper leads one to expect, checked against the measured held-out perplexity. */
const Expectation = z.union([
  /** `lower` has a lower held-out perplexity than `than`. */
  z.strictObject({ lower: name, than: name }),
  /** The variants' perplexities lie within `within` (relative) of each other. */
  z.strictObject({ close: z.array(name).min(2), within: z.number().positive() }),
  /** Quantizing with `method` raises every variant's perplexity by less than `below` (relative). */
  z.strictObject({ quantDrop: z.enum(QUANT_METHODS), below: z.number().positive() }),
]);
export type Expectation = z.infer<typeof Expectation>;

export const Experiment = z.strictObject({
  name,
  question: z.string().min(1),
  paper: z.strictObject({
    /** Where in the paper. */
    source: z.string().min(1),
    /** What the paper reports, in words. */
    says: z.string().min(1),
    expect: z.array(Expectation).min(1),
  }),
  holdEqual: z.enum(['parameters', 'storage', 'depth', 'none']),
  /** Relative spread allowed in the held-equal quantity. */
  tolerance: z.number().min(0).default(0.1),
  /** Variants the held-equal check leaves out (e.g. the untied model that spends more parameters). */
  unequal: z.array(name).default([]),
  /** Quantization methods applied to every variant after training. */
  quantize: z.array(z.enum(QUANT_METHODS)).default([]),
  scales: z.strictObject({ tiny: ScalePlan, small: ScalePlan }),
});
export type Experiment = z.infer<typeof Experiment>;

/** One variant at one scale: its shape and the model config it builds. */
export interface PlannedVariant {
  name: string;
  label: string;
  shape: Shape;
  config: MobileLLMConfig;
}

/** The base shape with the variant's delta applied, as the model config pre-training builds (mirrors pretrain.ts). */
function variantConfig(shape: Shape, budget: Budget): MobileLLMConfig {
  return {
    vocabSize: budget.vocabSize,
    hiddenSize: shape.hiddenSize,
    intermediateSize: shape.intermediateSize,
    hiddenAct: shape.hiddenAct,
    numBlocks: shape.numBlocks,
    numHeads: shape.numHeads,
    numKvHeads: shape.numKvHeads,
    headDim: shape.hiddenSize / shape.numHeads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositions: Math.max(2048, budget.seqLen),
    shareEmbedding: shape.shareEmbedding,
    sharing: shape.sharing,
    bosTokenId: 1,
    eosTokenId: 2,
    torchDtype: 'float32',
  };
}

/** The held-equal quantity of a variant. */
function heldQuantity(e: Experiment, c: MobileLLMConfig): number | null {
  if (e.holdEqual === 'parameters' || e.holdEqual === 'storage') return countParams(c).total;
  if (e.holdEqual === 'depth') return effectiveDepth(c);
  return null;
}

/** The variants of a scale, each checked for a valid shape; throws one line naming the variant. */
export function planVariants(e: Experiment, scale: Scale): PlannedVariant[] {
  const plan = e.scales[scale];
  const names = new Set<string>();
  const out = plan.variants.map((v) => {
    if (names.has(v.name)) throw new Error(`${e.name} (${scale}): variant "${v.name}" appears twice`);
    names.add(v.name);
    const shape: Shape = { ...plan.base, ...v.delta };
    const where = `${e.name} (${scale}) variant "${v.name}"`;
    if (shape.hiddenSize % shape.numHeads !== 0) throw new Error(`${where}: hiddenSize ${shape.hiddenSize} is not divisible by numHeads ${shape.numHeads}`);
    if ((shape.hiddenSize / shape.numHeads) % 2 !== 0)
      throw new Error(`${where}: the head size ${shape.hiddenSize / shape.numHeads} must be even (rotary embeddings)`);
    if (shape.numHeads % shape.numKvHeads !== 0) throw new Error(`${where}: numHeads ${shape.numHeads} is not a multiple of numKvHeads ${shape.numKvHeads}`);
    if ((shape.sharing.strategy === 'none') !== (shape.sharing.repeats === 1))
      throw new Error(`${where}: sharing "none" goes with repeats 1, a strategy with repeats ≥ 2`);
    return { name: v.name, label: v.label, shape, config: variantConfig(shape, plan.budget) };
  });
  for (const x of e.paper.expect) {
    const refs = 'lower' in x ? [x.lower, x.than] : 'close' in x ? x.close : [];
    for (const r of refs) if (!names.has(r)) throw new Error(`${e.name} (${scale}): the paper's expectation names "${r}", which is not a variant`);
    if ('quantDrop' in x && !e.quantize.includes(x.quantDrop)) throw new Error(`${e.name}: the expectation quantDrop "${x.quantDrop}" is not in quantize`);
  }
  const held = out.filter((v) => !e.unequal.includes(v.name)).map((v) => ({ v, q: heldQuantity(e, v.config) }));
  const qs = held.map((h) => h.q).filter((q): q is number => q !== null);
  if (qs.length) {
    const [lo, hi] = [Math.min(...qs), Math.max(...qs)];
    if (hi > lo * (1 + e.tolerance)) {
      const list = held.map((h) => `${h.v.name} ${h.q}`).join(', ');
      throw new Error(`${e.name} (${scale}): ${e.holdEqual} are not equal within ${e.tolerance * 100}% (${list})`);
    }
  }
  return out;
}

/** The pre-training input of one variant and seed (its model goes to `out`). */
export function variantPretrainInput(
  e: Experiment,
  scale: Scale,
  v: PlannedVariant,
  seed: number,
  out: string,
  runtime: PretrainInput['runtime'],
): PretrainInput {
  const b = e.scales[scale].budget;
  return {
    corpus: b.corpus,
    out,
    vocabSize: b.vocabSize,
    hiddenSize: v.shape.hiddenSize,
    intermediateSize: v.shape.intermediateSize,
    hiddenAct: v.shape.hiddenAct,
    numBlocks: v.shape.numBlocks,
    numHeads: v.shape.numHeads,
    numKvHeads: v.shape.numKvHeads,
    shareEmbedding: v.shape.shareEmbedding,
    sharing: v.shape.sharing,
    seqLen: b.seqLen,
    train: {
      maxSteps: b.steps,
      lr: b.lr,
      warmupSteps: b.warmupSteps,
      batchSize: b.batchSize,
      gradAccum: b.gradAccum,
      seed,
      evalEvery: b.evalEvery,
      saveEvery: b.saveEvery,
    },
    runtime,
    commandLine: `mlw lab run ${e.name} --scale ${scale} (variant ${v.name}, seed ${seed})`,
  };
}

/** Reads an experiment file; a bad file throws one line naming the file and the key. */
export function readExperiment(file: string): Experiment {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const parsed = Experiment.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue.path.join('.') || '(root)';
    const unknown = issue.code === 'unrecognized_keys' ? ` (unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')})` : '';
    throw new Error(`${file}: invalid "${key}": ${issue.message}${unknown}`);
  }
  return parsed.data;
}

/** The bundled experiments (resources/lab), by name. */
export function listExperiments(dir = LAB_DIR): { file: string; experiment: Experiment }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: path.join(dir, f), experiment: readExperiment(path.join(dir, f)) }));
}

/** An experiment by bundled name or by file path. */
export function findExperiment(ref: string, dir = LAB_DIR): { file: string; experiment: Experiment } {
  if (ref.endsWith('.json') || ref.includes(path.sep)) {
    if (!fs.existsSync(ref)) throw new Error(`${ref}: no such experiment file`);
    return { file: path.resolve(ref), experiment: readExperiment(ref) };
  }
  const file = path.join(dir, `${ref}.json`);
  if (!fs.existsSync(file)) {
    const known = listExperiments(dir).map((x) => x.experiment.name);
    throw new Error(`no experiment "${ref}" (bundled: ${known.join(', ') || 'none'}; or give a .json file)`);
  }
  const experiment = readExperiment(file);
  if (experiment.name !== ref) throw new Error(`${file}: its name is "${experiment.name}", not "${ref}"`);
  return { file, experiment };
}
