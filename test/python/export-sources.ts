// The model folders whose hf exports test/python/check_exports.py loads with
// the Python clients, and the exports themselves. Both make-exports.ts (which
// writes what is sent to the GPU machine) and test/export-hf.test.ts (which
// compares our scores with what Python recorded) build them here, so that the
// weights are the same bits on both sides: every source is derived
// deterministically from committed files.
//
//   default        resources/default-model (float16), its export and an adapter of it
//   shared-*       golden tiny models: tiny-gqa shared by engine/inspect/convert (immediate,
//                  mean of each pair), tiny-ls-reverse and tiny-ls-repeat-all as committed
//   quantized-*    tiny-gqa quantized w8, tiny-realvocab w4 (engine/quant)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { exportHf } from '../../engine/export/hf';
import { loadModel, saveModel } from '../../engine/io/checkpoint';
import { REMOTE_CODE_FILE } from '../../engine/io/remote-code';
import { shareModel } from '../../engine/inspect/convert';
import { quietContext } from '../../engine/jobs/job';
import { saveQuantizedModel } from '../../engine/quant/checkpoint';
import { quantizeModel } from '../../engine/quant/quantize';
import { resolveSpec } from '../../engine/quant/spec';
import { RESOURCES } from '../../engine/server/resources';
import { loadTokenizer } from '../../engine/tokenizer/tokenizer';
import { LoraSettings } from '../../engine/train/config';
import { applyLora, writeAdapterTensors } from '../../engine/train/lora';
import type { ArrayTensor } from '../../engine/io/raw-tensor';
import { rngFor } from '../../engine/train/rng';
import { goldenDir } from '../helpers/golden';
import { tinyModelDir } from '../helpers/train-fixtures';

export const DEFAULT_MODEL = path.join(RESOURCES, 'default-model');
/** Scored by every case of the default model (and its adapter). */
export const DEFAULT_TEXT = 'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.';
/** Scored by every tiny model (vocabulary 512). */
export const TINY_IDS = [1, 17, 300, 42, 511, 7, 99, 256, 3, 128, 64, 480, 5, 211, 33, 402];
/** Greedy decoding: tokens generated after the first PROMPT_TOKENS ids. */
export const PROMPT_TOKENS = 6;
export const NEW_TOKENS = 8;

/** How check_exports.py opens a folder: AutoModelForCausalLM, with trust_remote_code, AutoPeftModelForCausalLM, or LlamaForCausalLM. */
export type Loader = 'auto' | 'remote' | 'peft' | 'peft-remote' | 'llama';

export interface ScoredCase {
  name: string;
  /** The export folder, relative to the exports folder (which is the working directory in Python). */
  dir: string;
  loader: Loader;
  /** torch dtype to compute in; 'auto' is transformers' default (config.json's torch_dtype). */
  dtype: 'float32' | 'auto';
  /** The source folder whose scores ours are (a key of Sources). */
  source: keyof Sources;
  ids: number[];
}

/** A folder transformers must refuse to load (rather than loading something else without a word). */
export interface RefusalCase {
  name: string;
  dir: string;
  loader: Loader;
}

/** A folder Python loads and saves again with save_pretrained (its config.json and tensor names are recorded). */
export interface SavedCase {
  name: string;
  dir: string;
  loader: Loader;
}

export interface Sources {
  default: string;
  adapter: string;
  sharedAdapter: string;
  sharedImmediate: string;
  sharedReverse: string;
  sharedRepeatAll: string;
  quantizedW8: string;
  quantizedW4: string;
}

/** An adapter of `base` that changes it: A as training starts it, B drawn from a fixed seed. */
function randomAdapter(base: string, dir: string): void {
  const { model } = loadModel(base);
  const options = LoraSettings.parse({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v', 'down'] });
  const adapters = applyLora(model, options, { seed: 3 });
  const random = rngFor(11);
  const tensors = new Map<string, ArrayTensor>();
  for (const [name, t] of adapters.params()) {
    const values = name.includes('lora_B') ? Float32Array.from({ length: t.size }, () => (random() - 0.5) * 0.2) : (t.dataSync() as Float32Array);
    tensors.set(name, { values, shape: [...t.shape] });
  }
  adapters.remove();
  model.dispose();
  fs.mkdirSync(dir, { recursive: true });
  writeAdapterTensors(tensors, options, dir, base);
}

/** The source folders under `dir` (written the way the app writes them). */
export async function buildSources(dir: string): Promise<Sources> {
  fs.mkdirSync(dir, { recursive: true });
  const tiny = tinyModelDir(dir, 'tiny-gqa');
  const at = (name: string) => path.join(dir, name);

  const { model } = loadModel(tiny);
  const shared = shareModel(model, 'immediate', 'average');
  await saveModel(shared, at('shared-immediate'), { tokenizerFrom: tiny });
  shared.dispose();
  const w8 = await quantizeModel(model, resolveSpec(model.config, { method: 'w8' }), quietContext());
  await saveQuantizedModel(w8, at('quantized-w8'), { tokenizerFrom: tiny });
  w8.model.dispose();
  // w4 needs widths its group sizes divide (tiny-gqa's 176 is none of 32, 64, 128).
  const wide = tinyModelDir(dir, 'tiny-realvocab');
  const { model: realVocab } = loadModel(wide);
  const w4 = await quantizeModel(realVocab, resolveSpec(realVocab.config, { method: 'w4' }), quietContext());
  await saveQuantizedModel(w4, at('quantized-w4'), { tokenizerFrom: wide });
  w4.model.dispose();
  realVocab.dispose();
  model.dispose();

  randomAdapter(DEFAULT_MODEL, at('adapter'));
  // Its base's folder name, shared-immediate, is also the name of that base's export.
  randomAdapter(at('shared-immediate'), at('shared-adapter'));
  return {
    default: DEFAULT_MODEL,
    adapter: at('adapter'),
    sharedAdapter: at('shared-adapter'),
    sharedImmediate: at('shared-immediate'),
    sharedReverse: goldenDir('tiny-ls-reverse'),
    sharedRepeatAll: goldenDir('tiny-ls-repeat-all'),
    quantizedW8: at('quantized-w8'),
    quantizedW4: at('quantized-w4'),
  };
}

/** The ids of DEFAULT_TEXT as our tokenizer gives them (with BOS). */
export function defaultIds(): number[] {
  const t = loadTokenizer(DEFAULT_MODEL);
  return [t.bosId, ...t.encode(DEFAULT_TEXT)];
}

export interface ExportCases {
  /** sha256 of the modeling file the shared folders carry (fixtures recorded with another one are stale). */
  remoteCodeSha256: string;
  text: string;
  promptTokens: number;
  newTokens: number;
  scored: ScoredCase[];
  refusals: RefusalCase[];
  saved: SavedCase[];
}

/**
 * Writes the exports of `sources` under `out` (the folders sent to Python),
 * plus the app-written folders Python must load or refuse as they are; returns
 * what Python is to do with them.
 */
export async function buildExports(sources: Sources, out: string): Promise<ExportCases> {
  const at = (name: string) => path.join(out, name);
  // The adapter names its base "default-model" (its folder's name): Python finds the base's export there.
  await exportHf(sources.default, at('default-model'), {});
  await exportHf(sources.adapter, at('adapter'), {});
  await exportHf(sources.sharedAdapter, at('shared-adapter'), {});
  fs.cpSync(sources.sharedImmediate, at('shared-immediate-app'), { recursive: true });
  await exportHf(sources.sharedImmediate, at('shared-immediate'), {});
  await exportHf(sources.sharedImmediate, at('shared-immediate-unrolled'), { unroll: true });
  await exportHf(sources.sharedReverse, at('shared-reverse'), {});
  await exportHf(sources.sharedRepeatAll, at('shared-repeat-all'), {});
  await exportHf(sources.quantizedW4, at('dequantized-w4'), {});
  await exportHf(sources.quantizedW8, at('dequantized-w8'), {});
  fs.cpSync(sources.quantizedW8, at('quantized-w8-app'), { recursive: true });
  const ids = defaultIds();
  const scored: ScoredCase[] = [
    { name: 'default float16 export, computed in float32', dir: 'default-model', loader: 'auto', dtype: 'float32', source: 'default', ids },
    { name: 'default float16 export, transformers’ default dtype', dir: 'default-model', loader: 'auto', dtype: 'auto', source: 'default', ids },
    { name: 'adapter of the default model (PEFT)', dir: 'adapter', loader: 'peft', dtype: 'float32', source: 'adapter', ids },
    {
      name: 'adapter of the shared model (PEFT, trust_remote_code)',
      dir: 'shared-adapter',
      loader: 'peft-remote',
      dtype: 'float32',
      source: 'sharedAdapter',
      ids: TINY_IDS,
    },
    { name: 'shared immediate, compact export', dir: 'shared-immediate', loader: 'remote', dtype: 'float32', source: 'sharedImmediate', ids: TINY_IDS },
    {
      name: 'shared immediate, as the app writes it',
      dir: 'shared-immediate-app',
      loader: 'remote',
      dtype: 'float32',
      source: 'sharedImmediate',
      ids: TINY_IDS,
    },
    { name: 'shared immediate, unrolled export', dir: 'shared-immediate-unrolled', loader: 'auto', dtype: 'float32', source: 'sharedImmediate', ids: TINY_IDS },
    { name: 'shared reverse, compact export', dir: 'shared-reverse', loader: 'remote', dtype: 'float32', source: 'sharedReverse', ids: TINY_IDS },
    { name: 'shared repeat_all, compact export', dir: 'shared-repeat-all', loader: 'remote', dtype: 'float32', source: 'sharedRepeatAll', ids: TINY_IDS },
    { name: 'w4 dequantized export', dir: 'dequantized-w4', loader: 'auto', dtype: 'float32', source: 'quantizedW4', ids: TINY_IDS },
    { name: 'w8 dequantized export', dir: 'dequantized-w8', loader: 'auto', dtype: 'float32', source: 'quantizedW8', ids: TINY_IDS },
  ];
  const refusals: RefusalCase[] = [
    { name: 'compact shared without trust_remote_code', dir: 'shared-immediate', loader: 'auto' },
    { name: 'quantized folder (AutoModelForCausalLM)', dir: 'quantized-w8-app', loader: 'auto' },
    { name: 'quantized folder (LlamaForCausalLM)', dir: 'quantized-w8-app', loader: 'llama' },
    { name: 'compact shared (LlamaForCausalLM, asked for by name)', dir: 'shared-immediate', loader: 'llama' },
  ];
  const saved: SavedCase[] = [{ name: 'shared immediate, loaded and saved again', dir: 'shared-immediate', loader: 'remote' }];
  const remoteCode = fs.readFileSync(path.join(at('shared-immediate'), REMOTE_CODE_FILE));
  const remoteCodeSha256 = crypto.createHash('sha256').update(remoteCode).digest('hex');
  const cases: ExportCases = { remoteCodeSha256, text: DEFAULT_TEXT, promptTokens: PROMPT_TOKENS, newTokens: NEW_TOKENS, scored, refusals, saved };
  fs.writeFileSync(at('cases.json'), JSON.stringify(cases, null, 2) + '\n');
  return cases;
}
