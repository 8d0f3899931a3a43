// The hf export (engine/export/hf.ts) and the folders the app writes by
// default, checked three ways:
//   - Python: transformers 5.17 / peft 0.21 loaded our exports on the GPU
//     machine (test/python/check_exports.py, folders from
//     test/python/export-sources.ts); their log-probs and greedy tokens,
//     committed in test/fixtures/python-exports/, agree with ours on the source
//     folders, and the folders that must be refused were;
//   - our own round trip: every export read back by our reader scores as its source;
//   - the config keys that make transformers load (or refuse) each kind.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { exportHf } from '../engine/export/hf';
import { readModelFolder } from '../engine/folder/kind';
import { loadModelFolder } from '../engine/folder/load';
import { writeOrigin } from '../engine/hub/origin';
import { readSafetensors } from '../engine/io/safetensors';
import { REMOTE_CODE_FILE } from '../engine/io/remote-code';
import { configFromHf } from '../engine/model/config';
import { tensorSpecs } from '../engine/model/layout';
import type { MobileLLM } from '../engine/model/model';
import { scoreIds } from '../engine/runtime/score';
import { adapterConfigJson, readAdapterConfig, writeAdapterTensors } from '../engine/train/lora';
import { buildExports, buildSources, defaultIds, NEW_TOKENS, PROMPT_TOKENS, TINY_IDS, type ExportCases, type Sources } from './python/export-sources';
import { tempDir } from './helpers/train-fixtures';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures/python-exports');
/** Float32 in both: what the issue asks. */
const FLOAT32_TOLERANCE = 1e-4;
/**
 * transformers' default dtype for our float16 export is float16 (torch_dtype):
 * computed in float16 on the GPU, log-probs move by up to 2.2e-3 nats on the
 * default model (measured; float32 compute of the same file: 8e-6); greedy
 * tokens stay the same.
 */
const FLOAT16_TOLERANCE = 1e-2;

interface PythonScored {
  name: string;
  dir: string;
  loader: string;
  dtype: string;
  computeDtype?: string;
  logprobs?: number[];
  greedy?: number[];
  loaded?: { class: string; numHiddenLayers: number; modules: number };
  error?: string;
  warnings?: string[];
}
interface PythonResults {
  versions: Record<string, string>;
  scored: PythonScored[];
  refusals: { name: string; raised: boolean; error?: string; loaded?: { numHiddenLayers: number }; warnings?: string[] }[];
  saved: { name: string; config?: Record<string, unknown>; tensors?: string[]; files?: string[]; error?: string }[];
  tokenizer: { tokenizers: number[]; autoTokenizer: number[] };
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));
const python: PythonResults = readJson(path.join(FIXTURES, 'results.json'));
const recorded: ExportCases = readJson(path.join(FIXTURES, 'cases.json'));
/**
 * The cases of the bundled default model (its export, an adapter of it, its tokenizer) hold when the fixtures were
 * recorded on the model bundled now: its text's ids tell. A new default model makes them stale until
 * make-exports.ts and check_exports.py run again on the GPU machine; the other cases stand on committed golden files.
 */
const DEFAULT_SOURCES = new Set(['default', 'adapter']);
const defaultStale = JSON.stringify(recorded.scored.find((c) => c.source === 'default')?.ids) !== JSON.stringify(defaultIds());
if (defaultStale) {
  console.warn(
    'export-hf: the Python fixtures of the bundled default model were recorded on an earlier default model; its cases are left out until test/python/make-exports.ts and check_exports.py are run again on the GPU machine',
  );
}
const current = (c: { source: string }) => !(defaultStale && DEFAULT_SOURCES.has(c.source));

let tmp: string;
let sources: Sources;
let out: string;
let cases: ExportCases;

beforeAll(async () => {
  await initBackend();
  tmp = tempDir('export-hf');
  sources = await buildSources(path.join(tmp, 'sources'));
  out = path.join(tmp, 'exports');
  cases = await buildExports(sources, out);
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function withModel<T>(dir: string, use: (m: MobileLLM) => T): T {
  const { model } = loadModelFolder(readModelFolder(dir));
  try {
    return use(model);
  } finally {
    model.dispose();
  }
}

/** Greedy tokens after the first `prompt` ids (a full forward per token: no cache of ours involved). */
function greedy(m: MobileLLM, ids: number[], prompt: number, n: number): number[] {
  const seq = ids.slice(0, prompt);
  const outTokens: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = tf.tidy(() => {
      const logits = m.forward(tf.tensor2d([seq], [1, seq.length], 'int32'));
      return (tf.argMax(logits.slice([0, seq.length - 1, 0], [1, 1, -1]).reshape([-1])).dataSync() as Int32Array)[0];
    });
    seq.push(next);
    outTokens.push(next);
  }
  return outTokens;
}

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

describe('Python clients (fixtures recorded with transformers and peft)', () => {
  it('were given the folders these sources make now (same cases, same ids)', () => {
    const fresh = (x: ExportCases) => ({ ...x, scored: x.scored.filter(current) });
    expect(fresh(recorded)).toEqual(fresh(cases));
    expect(python.scored.map((s) => s.name)).toEqual(cases.scored.map((c) => c.name));
    expect(python.versions.transformers).toMatch(/^5\./);
  });

  it('score every export as we score its source: log-probs within 1e-4 in float32, the same greedy tokens', () => {
    for (const c of cases.scored.filter(current)) {
      const py = python.scored.find((s) => s.name === c.name)!;
      expect(py.error, c.name).toBeUndefined();
      const ours = withModel(sources[c.source], (m) => ({ logprobs: scoreIds(m, c.ids).logprobs, greedy: greedy(m, c.ids, PROMPT_TOKENS, NEW_TOKENS) }));
      const tolerance = py.computeDtype === 'float16' ? FLOAT16_TOLERANCE : FLOAT32_TOLERANCE;
      expect(py.logprobs, c.name).toHaveLength(c.ids.length - 1);
      expect(maxDiff(py.logprobs!, ours.logprobs), c.name).toBeLessThan(tolerance);
      expect(py.greedy, c.name).toEqual(ours.greedy);
    }
  });

  it('run a shared model at its effective depth, its physical blocks stored once', () => {
    const loaded = (name: string) => python.scored.find((s) => s.dir === name)!.loaded!;
    expect(loaded('shared-immediate')).toEqual({ class: 'MobileLLMForCausalLM', numHiddenLayers: 4, modules: 2 });
    expect(loaded('shared-reverse')).toEqual({ class: 'MobileLLMForCausalLM', numHiddenLayers: 6, modules: 3 });
    expect(loaded('shared-immediate-unrolled')).toEqual({ class: 'LlamaForCausalLM', numHiddenLayers: 4, modules: 4 });
    expect(loaded('shared-adapter')).toEqual({ class: 'MobileLLMForCausalLM', numHiddenLayers: 4, modules: 2 }); // PEFT's base, through our code
  });

  it('refused what they cannot load as it is: compact shared without trust_remote_code, quantized folders', () => {
    const refusal = (name: string) => python.refusals.find((r) => r.name === name)!;
    expect(refusal('compact shared without trust_remote_code')).toMatchObject({ raised: true, error: expect.stringMatching(/custom code/) });
    expect(refusal('quantized folder (AutoModelForCausalLM)')).toMatchObject({ raised: true, error: expect.stringMatching(/model type `mobilellm`/) });
    expect(refusal('quantized folder (LlamaForCausalLM)')).toMatchObject({ raised: true, error: expect.stringMatching(/quant_method/) });
    // Asked for by class name, LlamaForCausalLM builds the physical blocks only, but says the type is not its own.
    const byName = refusal('compact shared (LlamaForCausalLM, asked for by name)');
    expect(byName.raised).toBe(false);
    expect(byName.warnings!.some((w) => w.includes('model of type `mobilellm` to instantiate a model of type `llama`'))).toBe(true);
  });

  it('save a loaded compact model again as one we read: the same architecture, each block once, the modeling file beside', () => {
    const saved = python.saved.find((s) => s.name === 'shared immediate, loaded and saved again')!;
    expect(saved.error).toBeUndefined();
    const source = readModelFolder(sources.sharedImmediate);
    expect(configFromHf(saved.config, 'saved config.json')).toEqual({ ...source.config, torchDtype: 'float32' });
    expect(saved.tensors).toEqual(
      tensorSpecs(source.config)
        .map((s) => s.name)
        .sort(),
    );
    expect(saved.files).toContain(REMOTE_CODE_FILE);
  });

  it.skipIf(defaultStale)('the default model’s text: the tokenizers library gives our ids', () => {
    expect(python.tokenizer.tokenizers).toEqual(cases.scored[0].ids);
  });
});

describe('our own round trip', () => {
  const scores = (dir: string, ids: number[]) => withModel(dir, (m) => scoreIds(m, ids).logprobs);

  it('every export read back scores as its source', async () => {
    await exportHf(sources.default, path.join(out, 'default-f32'), { dtype: 'float32' });
    await exportHf(sources.sharedReverse, path.join(out, 'shared-reverse-unrolled'), { unroll: true });
    const roundTrips: [string, keyof Sources][] = [
      ['default-model', 'default'],
      ['default-f32', 'default'],
      ['adapter', 'adapter'],
      ['shared-immediate', 'sharedImmediate'],
      ['shared-immediate-unrolled', 'sharedImmediate'],
      ['shared-reverse', 'sharedReverse'],
      ['shared-reverse-unrolled', 'sharedReverse'],
      ['shared-repeat-all', 'sharedRepeatAll'],
      ['dequantized-w4', 'quantizedW4'],
      ['dequantized-w8', 'quantizedW8'],
    ];
    const ids = cases.scored[0].ids;
    for (const [dir, source] of roundTrips) {
      const use = source === 'default' || source === 'adapter' ? ids : TINY_IDS;
      expect(maxDiff(scores(path.join(out, dir), use), scores(sources[source], use)), dir).toBeLessThan(1e-5);
    }
  });

  it('an unrolled adapter of a shared base holds each block’s adapter once per layer that runs it', async () => {
    const base = path.join(tmp, 'shared-base');
    fs.cpSync(sources.sharedImmediate, base, { recursive: true });
    const adapter = path.join(tmp, 'shared-adapter');
    fs.mkdirSync(adapter);
    // Block b's A is all b + 1, so that each layer's copy says which block it came from.
    const lora = new Map<string, { values: Float32Array; shape: number[] }>();
    for (const b of [0, 1]) {
      lora.set(`base_model.model.model.layers.${b}.self_attn.q_proj.lora_A.weight`, { values: new Float32Array(64 * 4).fill(b + 1), shape: [64, 4] });
      lora.set(`base_model.model.model.layers.${b}.self_attn.q_proj.lora_B.weight`, { values: new Float32Array(4 * 64).fill(0.01), shape: [4, 64] });
    }
    writeAdapterTensors(lora, { rank: 4, alpha: 8, dropout: 0, targets: ['q'], rslora: false }, adapter, base);
    await exportHf(adapter, path.join(out, 'shared-adapter-unrolled'), { unroll: true });
    const unrolled = readSafetensors(path.join(out, 'shared-adapter-unrolled', 'adapter_model.safetensors')).tensors;
    // immediate ×2: layers 0, 1 run block 0; layers 2, 3 block 1
    const firstOfA = (l: number) => new Float32Array(unrolled.get(`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`)!.data.slice().buffer)[0];
    expect(unrolled.size).toBe(4 * 2);
    expect([0, 1, 2, 3].map(firstOfA)).toEqual([1, 1, 2, 2]);
  });
});

describe('config keys', () => {
  const config = (dir: string) => readJson(path.join(out, dir, 'config.json'));

  it('an unshared model is standard LLaMA, its dtype said', () => {
    expect(config('default-model')).toMatchObject({
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      tie_word_embeddings: true,
      torch_dtype: 'float16',
      num_hidden_layers: readJson(path.join(sources.default, 'config.json')).num_hidden_layers,
    });
    expect(config('default-model')).not.toHaveProperty('auto_map');
    expect(fs.existsSync(path.join(out, 'default-model', 'tokenizer.json'))).toBe(true);
    expect(readSafetensors(path.join(out, 'default-model', 'model.safetensors')).tensors.get('model.norm.weight')!.dtype).toBe('F16');
    expect(config('dequantized-w8')).toMatchObject({ model_type: 'llama', torch_dtype: 'float32' });
    expect(config('dequantized-w8')).not.toHaveProperty('quantization');
    expect(config('dequantized-w8')).not.toHaveProperty('quantization_config');
  });

  it('a shared model is compact with auto_map and our modeling file, or unrolled LLaMA of the effective depth', () => {
    const compact = config('shared-immediate');
    expect(compact).toMatchObject({
      model_type: 'mobilellm',
      num_hidden_layers: 2,
      layer_sharing: true,
      layer_sharing_strategy: 'immediate',
      layer_sharing_repeats: 2,
      auto_map: { AutoConfig: 'modeling_mobilellm.MobileLLMConfig', AutoModelForCausalLM: 'modeling_mobilellm.MobileLLMForCausalLM' },
    });
    const shipped = path.resolve(import.meta.dirname, '../resources/export', REMOTE_CODE_FILE);
    for (const dir of ['shared-immediate', 'shared-immediate-app']) {
      expect(fs.readFileSync(path.join(out, dir, REMOTE_CODE_FILE), 'utf8')).toBe(fs.readFileSync(shipped, 'utf8'));
    }
    expect(config('shared-immediate-unrolled')).toMatchObject({ model_type: 'llama', num_hidden_layers: 4 });
    expect(config('shared-immediate-unrolled')).not.toHaveProperty('layer_sharing');
    expect(fs.existsSync(path.join(out, 'shared-immediate-unrolled', REMOTE_CODE_FILE))).toBe(false);
  });

  it('a quantized folder as the app writes it carries a quantization_config transformers refuses', () => {
    const q = config('quantized-w8-app');
    expect(q).toMatchObject({ model_type: 'mobilellm', quantization: { method: 'w8' }, quantization_config: { quant_method: null } });
    expect(q).not.toHaveProperty('auto_map');
    expect(readModelFolder(path.join(out, 'quantized-w8-app')).kind).toBe('quantized');
  });

  it('an adapter names its base as another machine resolves it, and where it is here', () => {
    const cfg = readJson(path.join(out, 'adapter', 'adapter_config.json'));
    expect(cfg).toMatchObject({ base_model_name_or_path: 'default-model', mlw_base_model_path: sources.default, revision: null });
    for (const f of ['adapter_model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) expect(fs.existsSync(path.join(out, 'adapter', f)), f).toBe(true);
    expect(readAdapterConfig(path.join(out, 'adapter')).baseModel).toBe(sources.default);
  });

  it('an adapter of a model pulled from the Hub names its Hub id (and commit for a revision other than main)', () => {
    const base = path.join(tmp, 'pulled');
    fs.cpSync(sources.sharedImmediate, base, { recursive: true });
    writeOrigin(base, { repo: 'facebook/MobileLLM-125M', revision: 'main', commit: 'a'.repeat(40) });
    expect(adapterConfigJson({ rank: 4, alpha: 8, dropout: 0, targets: ['q'], rslora: false }, base)).toMatchObject({
      base_model_name_or_path: 'facebook/MobileLLM-125M',
      revision: null,
      mlw_base_model_path: base,
    });
    writeOrigin(base, { repo: 'facebook/MobileLLM-125M', revision: 'v2', commit: 'b'.repeat(40) });
    expect(adapterConfigJson({ rank: 4, alpha: 8, dropout: 0, targets: ['q'], rslora: false }, base)).toMatchObject({ revision: 'b'.repeat(40) });
  });

  it('our reader still reads the old mobilellm folders', () => {
    const old = readJson(path.join(sources.sharedReverse, 'config.json'));
    expect(old.model_type).toBe('mobilellm');
    expect(old).not.toHaveProperty('auto_map');
    expect(readModelFolder(sources.sharedReverse).config.sharing).toEqual({ strategy: 'reverse', repeats: 2 });
  });
});
