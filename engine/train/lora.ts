// LoRA (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update,
//
//   y = base(x) + s · dropout(x) · A · B        A [in, r], B [r, out], s = α/r (α/√r with rsLoRA)
//
// A starts kaiming-uniform as in PEFT (U(±1/√in)), B at zero, so training starts
// from the base model exactly. One adapter per *physical* block: a layer-shared
// block runs its adapter at every use and gets the summed gradient.
//
// On disk it is a Hugging Face PEFT adapter: adapter_config.json and
// adapter_model.safetensors with keys
//   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight   [r, in]
//   base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight   [out, r]
// (PyTorch's [out, in] layout: lora_A.weight = Aᵀ, lora_B.weight = Bᵀ).
// Merging folds the update into the base weight: W' = W + s·A·B in our [in, out]
// layout, which is PEFT's W + s·lora_B·lora_A in PyTorch's.
//
// adapter_config.json names the base so that AutoPeftModelForCausalLM finds it
// on another machine: base_model_name_or_path is its Hub id when it was pulled
// (hub/origin.ts), else its folder's name; `mlw_base_model_path` (ours) says
// where it is on this machine.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { DenseLinear, type Linear } from '../model/linear';
import { blockLinear, type MobileLLM } from '../model/model';
import { LINEAR_KEYS, LINEAR_NAMES, type LinearKey } from '../model/layout';
import type { BlockWeights } from '../model/block';
import { readSafetensors, writeSafetensors } from '../io/safetensors';
import { finiteFloat32, float32Raw, transposed, type ArrayTensor, type RawTensor } from '../io/raw-tensor';
import { loadModel, saveModel } from '../io/checkpoint';
import { writeFileAtomic } from '../io/atomic';
import type { LoraSettings } from './config';
import { readOrigin } from '../hub/origin';
import { RNG, mixSeed, rngFor } from './rng';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export function loraScale(o: Pick<LoraSettings, 'rank' | 'alpha' | 'rslora'>): number {
  return o.rslora ? o.alpha / Math.sqrt(o.rank) : o.alpha / o.rank;
}

/**
 * Dropout on the adapters' inputs, driven by the trainer: it sets `key` (a hash
 * of seed, step, micro-batch and effective layer) before each block, so a mask
 * depends only on where it is used, and a recomputed block sees the same mask.
 * `key` null (evaluation, inference) turns dropout off.
 */
export class LoraDropout {
  key: number | null = null;
  constructor(readonly rate: number) {}

  apply(x: tf.Tensor2D, site: number): tf.Tensor2D {
    if (this.rate === 0 || this.key === null) return x;
    return tf.dropout(x, this.rate, undefined, mixSeed(this.key, site)) as tf.Tensor2D;
  }
}

export class LoraLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  /** a [in, r], b [r, out] (tf.Variables when trained); `site` tells dropout masks apart. */
  constructor(
    readonly base: Linear,
    readonly a: tf.Tensor2D,
    readonly b: tf.Tensor2D,
    readonly scale: number,
    private readonly dropout: LoraDropout,
    private readonly site: number,
  ) {
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const h = tf.mul(tf.matMul(this.dropout.apply(x, this.site), this.a), this.scale); // [n, r]
      return tf.add(this.base.apply(x), tf.matMul(h, this.b)) as tf.Tensor2D;
    });
  }

  /** Disposes the adapter only; the base layer belongs to the model. */
  dispose(): void {
    this.a.dispose();
    this.b.dispose();
  }
}

/** PEFT's module name of a block's linear, e.g. "q_proj". */
export const peftModuleName = (key: LinearKey): string => LINEAR_NAMES[key].split('.')[1];

export const peftKey = (block: number, key: LinearKey, which: 'A' | 'B') => `base_model.model.model.layers.${block}.${LINEAR_NAMES[key]}.lora_${which}.weight`;

function setBlockLinear(b: BlockWeights, key: LinearKey, lin: Linear): void {
  if (key === 'q' || key === 'k' || key === 'v' || key === 'o') b.attn[key] = lin;
  else b.mlp[key] = lin;
}

/** The adapters installed in a model, keyed by their PEFT names (lora_A/lora_B of each target). */
export class LoraAdapters {
  constructor(
    readonly model: MobileLLM,
    readonly options: LoraSettings,
    readonly dropout: LoraDropout,
    /** [block][key] → adapter */
    readonly layers: Map<LinearKey, LoraLinear>[],
  ) {}

  /** Every A and B under its PEFT name (A as [in, r], B as [r, out]: our layout). */
  params(): Map<string, tf.Tensor2D> {
    const out = new Map<string, tf.Tensor2D>();
    this.layers.forEach((byKey, block) => {
      for (const [key, lin] of byKey) {
        out.set(peftKey(block, key, 'A'), lin.a);
        out.set(peftKey(block, key, 'B'), lin.b);
      }
    });
    return out;
  }

  /** Trainable parameters: Σ r·(in + out) over the adapted layers. */
  count(): number {
    let n = 0;
    for (const t of this.params().values()) n += t.size;
    return n;
  }

  /** Puts the base layers back (dropping the adapters). */
  remove(): void {
    this.layers.forEach((byKey, block) => {
      for (const [key, lin] of byKey) {
        setBlockLinear(this.model.weights.blocks[block], key, lin.base);
        lin.dispose();
      }
    });
  }

  /** Folds each adapter into its base weight, W' = W + s·A·B, leaving a plain model. */
  merge(): void {
    this.layers.forEach((byKey, block) => {
      for (const [key, lin] of byKey) {
        if (!(lin.base instanceof DenseLinear)) throw new Error(`layer ${block} ${LINEAR_NAMES[key]}: can only merge into a dense float layer`);
        const base = lin.base;
        const merged = tf.tidy(() => tf.add(base.w, tf.mul(tf.matMul(lin.a, lin.b), lin.scale)) as tf.Tensor2D);
        setBlockLinear(this.model.weights.blocks[block], key, new DenseLinear(merged));
        base.dispose();
        lin.dispose();
      }
    });
  }
}

/** A fresh adapter's A [in, r] for block `block`'s linear `key`: kaiming_uniform_(a=√5) on lora_A [r, in], bound √(6 / ((1 + 5)·in)) = 1/√in. */
export function initialLoraA(seed: number, block: number, key: LinearKey, nIn: number, r: number): Float32Array {
  const random = rngFor(seed, RNG.loraInit, block, LINEAR_KEYS.indexOf(key));
  const bound = 1 / Math.sqrt(nIn);
  return Float32Array.from({ length: nIn * r }, () => (2 * random() - 1) * bound);
}

/**
 * Wraps the target linears of every block of `model` in LoRA layers. Without
 * `weights`, A is drawn from `seed` and B is zero; with `weights` (PEFT names,
 * our layout) they are used as they are. `wrap` makes trainable variables.
 */
export function applyLora(
  model: MobileLLM,
  options: LoraSettings,
  init: { seed: number } | { weights: Map<string, tf.Tensor2D> },
  wrap: (t: tf.Tensor2D) => tf.Tensor2D = (t) => t,
): LoraAdapters {
  const dropout = new LoraDropout(options.dropout);
  const scale = loraScale(options);
  const r = options.rank;
  const layers: Map<LinearKey, LoraLinear>[] = [];
  const adapters = new LoraAdapters(model, options, dropout, layers);
  try {
    model.weights.blocks.forEach((b, block) => {
      const byKey = new Map<LinearKey, LoraLinear>();
      layers.push(byKey);
      for (const key of LINEAR_KEYS) {
        if (!options.targets.includes(key)) continue;
        const base = blockLinear(b, key);
        if (base instanceof LoraLinear) throw new Error(`layer ${block} ${LINEAR_NAMES[key]} already has a LoRA adapter`);
        const { inFeatures: nIn, outFeatures: nOut } = base;
        let a: tf.Tensor2D;
        let bw: tf.Tensor2D;
        if ('seed' in init) {
          a = tf.tensor2d(initialLoraA(init.seed, block, key, nIn, r), [nIn, r]);
          bw = tf.zeros([r, nOut]);
        } else {
          const find = (which: 'A' | 'B', shape: [number, number]) => {
            const t = init.weights.get(peftKey(block, key, which));
            if (!t) throw new Error(`adapter has no tensor "${peftKey(block, key, which)}"`);
            if (t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
              throw new Error(
                `adapter tensor "${peftKey(block, key, which)}" is [${[...t.shape].reverse()}], expected [${[...shape].reverse()}] for rank ${r}`,
              );
            }
            return t;
          };
          const [ta, tb] = [find('A', [nIn, r]), find('B', [r, nOut])];
          a = ta.clone();
          bw = tb.clone();
        }
        const lin = new LoraLinear(base, wrap(a), wrap(bw), scale, dropout, block * LINEAR_KEYS.length + LINEAR_KEYS.indexOf(key));
        if (lin.a !== a) a.dispose();
        if (lin.b !== bw) bw.dispose();
        setBlockLinear(b, key, lin);
        byKey.set(key, lin);
      }
    });
  } catch (err) {
    adapters.remove(); // leave the model as it was
    throw err;
  }
  return adapters;
}

// ---------------------------------------------------------------- PEFT files

const MODULE_NAMES = LINEAR_KEYS.map(peftModuleName);

/** The adapter_config.json keys we read; anything changing the math we do not implement is refused. */
const AdapterConfigSchema = z.looseObject({
  peft_type: z.literal('LORA'),
  task_type: z.string().nullish(),
  r: z.number().int().positive(),
  lora_alpha: z.number().positive(),
  lora_dropout: z.number().min(0).max(1).default(0),
  target_modules: z.array(z.enum(MODULE_NAMES as [string, ...string[]])).min(1),
  base_model_name_or_path: z.string().nullish(),
  revision: z.string().nullish(),
  /** Ours: the base model's folder on the machine that wrote the adapter. */
  mlw_base_model_path: z.string().nullish(),
  bias: z.literal('none').default('none'),
  fan_in_fan_out: z.literal(false).default(false),
  use_rslora: z.boolean().default(false),
  use_dora: z.literal(false).default(false),
  modules_to_save: z.null().optional(),
  layers_to_transform: z.null().optional(),
  rank_pattern: z.record(z.string(), z.never()).optional(),
  alpha_pattern: z.record(z.string(), z.never()).optional(),
});

export interface AdapterInfo {
  options: LoraSettings;
  /** The base model's folder on this machine (resolveBaseModel), else its name as written; null when none is named. */
  baseModel: string | null;
  /** base_model_name_or_path as written: a Hub id, a folder name, or (older adapters) an absolute path. */
  baseModelName: string | null;
}

/** The key of our own that records the base model's folder. */
export const BASE_MODEL_PATH_KEY = 'mlw_base_model_path';

/**
 * Where the base model is on this machine: an absolute base_model_name_or_path
 * (older adapters wrote one) as it is; else our own key, when that folder
 * exists; else the name as a folder, relative to the working directory (as
 * PEFT resolves it) or beside the adapter. Else (for the error that names
 * it) the folder it was in, or the name.
 */
function resolveBaseModel(dir: string, name: string | null, localPath: string | null): string | null {
  if (name && path.isAbsolute(name)) return name;
  if (localPath && fs.existsSync(localPath)) return localPath;
  if (name) {
    for (const candidate of [path.resolve(name), path.resolve(dir, '..', name)]) if (fs.existsSync(candidate)) return candidate;
  }
  return localPath ?? name;
}

export function readAdapterConfig(dir: string): AdapterInfo {
  const file = path.join(dir, ADAPTER_CONFIG);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${ADAPTER_CONFIG} (not a PEFT LoRA adapter folder)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
  const parsed = AdapterConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: unsupported or invalid "${issue.path.join('.') || '(root)'}": ${issue.message}`);
  }
  const c = parsed.data;
  const targets = LINEAR_KEYS.filter((k) => c.target_modules.includes(peftModuleName(k)));
  const name = c.base_model_name_or_path ?? null;
  return {
    options: { rank: c.r, alpha: c.lora_alpha, dropout: c.lora_dropout, targets, rslora: c.use_rslora },
    baseModel: resolveBaseModel(dir, name, c.mlw_base_model_path ?? null),
    baseModelName: name,
  };
}

/** The name another machine resolves the base model folder `baseDir` by: its Hub id (and revision) when pulled, else the folder's name. */
export function baseModelName(baseDir: string): { name: string; revision: string | null } {
  const origin = readOrigin(baseDir);
  if (origin) return { name: origin.repo, revision: origin.revision === 'main' ? null : origin.commit };
  return { name: path.basename(path.resolve(baseDir)), revision: null };
}

/** adapter_config.json of an adapter of the base model in folder `baseDir`. */
export function adapterConfigJson(options: LoraSettings, baseDir: string): Record<string, unknown> {
  const base = baseModelName(baseDir);
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base.name,
    [BASE_MODEL_PATH_KEY]: path.resolve(baseDir),
    r: options.rank,
    lora_alpha: options.alpha,
    lora_dropout: options.dropout,
    target_modules: options.targets.map(peftModuleName),
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: options.rslora,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: base.revision,
  };
}

/** Writes adapter_config.json + adapter_model.safetensors into `dir` (an existing folder). */
export function writeAdapterFiles(adapters: LoraAdapters, dir: string, baseDir: string): void {
  const tensors = new Map<string, ArrayTensor>();
  for (const [name, t] of adapters.params()) tensors.set(name, { values: t.dataSync() as Float32Array, shape: [...t.shape] });
  writeAdapterTensors(tensors, adapters.options, dir, baseDir);
}

/** An adapter's files from its tensors (PEFT names, our layout: A [in, r], B [r, out]), for the base model in folder `baseDir`. */
export function writeAdapterTensors(tensors: Map<string, ArrayTensor>, options: LoraSettings, dir: string, baseDir: string): void {
  const raw: [string, RawTensor][] = [...tensors].map(([name, t]) => {
    const [rows, cols] = t.shape;
    return [name, float32Raw(transposed(t.values, rows, cols), [cols, rows])]; // PyTorch layout
  });
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), raw, { format: 'pt' });
  writeFileAtomic(path.join(dir, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(options, baseDir), null, 2) + '\n');
}

/** Reads an adapter folder's tensors in our layout (A [in, r], B [r, out]). */
export function readAdapterWeights(dir: string): Map<string, tf.Tensor2D> {
  return new Map([...readAdapterArrays(dir)].map(([name, t]) => [name, tf.tensor2d(t.values, t.shape as [number, number])]));
}

/** readAdapterWeights as arrays. */
export function readAdapterArrays(dir: string): Map<string, ArrayTensor> {
  const file = path.join(dir, ADAPTER_WEIGHTS);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${ADAPTER_WEIGHTS}`);
  const out = new Map<string, ArrayTensor>();
  for (const [name, raw] of readSafetensors(file).tensors) {
    if (raw.shape.length !== 2) throw new Error(`${file}: tensor "${name}" is not a matrix`);
    const [rows, cols] = raw.shape;
    out.set(name, { values: transposed(finiteFloat32(raw, file, name), rows, cols), shape: [cols, rows] });
  }
  return out;
}

/** Installs the adapter in `dir` into `model`. Every tensor of the file must be used. */
export function loadAdapter(model: MobileLLM, dir: string, wrap?: (t: tf.Tensor2D) => tf.Tensor2D): LoraAdapters {
  const { options } = readAdapterConfig(dir);
  const weights = readAdapterWeights(dir);
  try {
    const adapters = applyLora(model, options, { weights }, wrap);
    const used = adapters.params();
    const extra = [...weights.keys()].find((k) => !used.has(k));
    if (extra) {
      adapters.remove();
      throw new Error(`${path.join(dir, ADAPTER_WEIGHTS)}: unexpected tensor "${extra}" (not a target of this adapter's config)`);
    }
    return adapters;
  } finally {
    for (const t of weights.values()) t.dispose();
  }
}

/**
 * Merges the adapter in `adapterDir` into its base model (`baseDir`, default the
 * adapter's base_model_name_or_path) and saves a plain model folder at `outDir`.
 */
export async function mergeLoraFolder(adapterDir: string, outDir: string, baseDir?: string): Promise<void> {
  const base = baseDir ?? readAdapterConfig(adapterDir).baseModel;
  if (!base) throw new Error(`${path.join(adapterDir, ADAPTER_CONFIG)}: no base_model_name_or_path; give the base model folder`);
  if (!fs.existsSync(base)) throw new Error(`base model folder ${base} not found (from ${path.join(adapterDir, ADAPTER_CONFIG)}); give the base model folder`);
  const { model } = loadModel(base);
  try {
    loadAdapter(model, adapterDir).merge();
    await saveModel(model, outDir, { tokenizerFrom: base });
  } finally {
    model.dispose();
  }
}
