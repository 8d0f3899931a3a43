// Every command that takes a model folder accepts the same four kinds, opened
// in one place (engine/folder): a float model, a quantized one, a LoRA
// adapter (merged into its base: it scores, generates and evaluates as the
// merged model does) and a layer-shared one; and a folder none of them is
// gets the same one-line reason from each command. The CLI runs in this
// process (mlwHere), the tiny golden models make each call quick.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { readModelFolder, UnusableFolderError } from '../engine/folder/kind';
import { loadModel } from '../engine/io/checkpoint';
import type { InspectReport } from '../engine/inspect/schema';
import { quietContext } from '../engine/jobs/job';
import { EngineService } from '../engine/server/service';
import { openStore } from '../engine/store/open';
import { saveQuantizedModel } from '../engine/quant/checkpoint';
import { quantizeModel } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import { LoraSettings } from '../engine/train/config';
import { ADAPTER_CONFIG, applyLora, writeAdapterFiles } from '../engine/train/lora';
import { FIXTURES } from './helpers/golden';
import { tempDir, tinyModelDir, tinyTokenizerJson } from './helpers/train-fixtures';
import { mlwHere } from './helpers/train-spawn';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('model-folders');
const home = path.join(tmp, 'home');
const TEXT = path.join(FIXTURES, 'eval/text.txt');
/** What quantize measures its perplexity and layer errors on: a few windows' worth keeps it quick. */
const SHORT_TEXT = path.join(tmp, 'short.txt');
const dirs = {} as Record<'float' | 'quantized' | 'adapter' | 'shared' | 'merged' | 'empty' | 'orphan' | 'oversized', string>;
type Kind = 'float' | 'quantized' | 'adapter' | 'shared';
const KINDS: Kind[] = ['float', 'quantized', 'adapter', 'shared'];

beforeAll(async () => {
  await initBackend();
  fs.writeFileSync(SHORT_TEXT, fs.readFileSync(TEXT, 'utf8').slice(0, 160));
  dirs.float = tinyModelDir(tmp, 'tiny-gqa');
  dirs.shared = tinyModelDir(tmp, 'tiny-ls-immediate');
  const { model } = loadModel(dirs.float);
  const q = await quantizeModel(model, resolveSpec(model.config, { method: 'w8a8' }), quietContext());
  dirs.quantized = path.join(tmp, 'quantized');
  await saveQuantizedModel(q, dirs.quantized, { tokenizerFrom: dirs.float });
  q.model.dispose();
  // An adapter that changes the model: B drawn at random instead of zero.
  const adapters = applyLora(model, LoraSettings.parse({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v', 'down'] }), { seed: 1 }, (t) => tf.variable(t));
  for (const [name, t] of adapters.params()) if (name.includes('lora_B')) (t as tf.Variable).assign(tf.randomNormal(t.shape, 0, 0.2, 'float32', 7));
  dirs.adapter = path.join(tmp, 'adapter');
  fs.mkdirSync(dirs.adapter);
  writeAdapterFiles(adapters, dirs.adapter, dirs.float);
  adapters.remove();
  model.dispose();
  dirs.merged = path.join(tmp, 'merged');
  expect((await mlwHere(['merge', dirs.adapter, '--out', dirs.merged])).code).toBe(0);
  dirs.empty = path.join(tmp, 'empty');
  fs.mkdirSync(dirs.empty);
  dirs.orphan = path.join(tmp, 'orphan');
  fs.cpSync(dirs.adapter, dirs.orphan, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dirs.orphan, ADAPTER_CONFIG), 'utf8'));
  fs.writeFileSync(path.join(dirs.orphan, ADAPTER_CONFIG), JSON.stringify({ ...cfg, base_model_name_or_path: path.join(tmp, 'gone') }));
  dirs.oversized = path.join(tmp, 'oversized');
  fs.cpSync(dirs.float, dirs.oversized, { recursive: true });
  oversize(dirs.oversized);
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Makes a folder's config.json ask for a billion layers (engine/model/limits.ts refuses it before sizing anything by it). */
function oversize(dir: string): void {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), num_hidden_layers: 1e9 }));
}

/** The one line readModelFolder refuses `dir` with. */
function reasonOf(dir: string): string {
  try {
    readModelFolder(dir);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`${dir} is a usable folder`);
}

/** `fn` of each key, one after the other (mlwHere captures this process's output, one call at a time). */
async function byKind<K extends string, T>(keys: K[], fn: (k: K) => Promise<T>): Promise<Record<K, T>> {
  const out = {} as Record<K, T>;
  for (const k of keys) out[k] = await fn(k);
  return out;
}

/** `mlw … --json` that must succeed: its JSON, read as `T` (the fields a test looks at). */
async function ok<T>(args: string[]): Promise<T> {
  const r = await mlwHere(['--home', home, ...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** `mlw …` that must fail: its one line on stderr. */
async function refused(args: string[]): Promise<string> {
  const r = await mlwHere(['--home', home, ...args]);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n') && !r.stderr.slice(0, -1).includes('\n')).toBe(true);
  return r.stderr.trim();
}

/** What the tests read of `mlw score --json` and `mlw info --json`. */
type Scores = { logprobs: number[]; nll: number };
type Info = {
  kind: string;
  format: string;
  quantization: { method: string } | null;
  adapter: Record<string, unknown> | null;
  params: unknown;
  schedule: number[];
};

const IDS = '1,5,9,33,270,300';
const commands = (dir: string, out: string): [string, string[]][] => [
  ['score', ['score', dir, '--ids', IDS]],
  ['tokenize', ['tokenize', dir, '--text', '3+4=7']],
  ['info', ['info', dir]],
  ['generate', ['generate', dir, '--prompt-ids', '1,5,9', '--max-new-tokens', '4', '--temperature', '0', '--no-eos']],
  ['eval', ['eval', dir, '--text', TEXT, '--window', '32']],
  ['quantize', ['quantize', dir, '--method', 'w8', '--eval-text', SHORT_TEXT, '--out', out]],
  ['inspect', ['inspect', dir, '--probe-ids', IDS]],
];

describe('recognising a folder', () => {
  it('tells the kinds apart and finds their architecture and tokenizer', () => {
    const kinds = KINDS.map((k) => readModelFolder(dirs[k]));
    expect(kinds.map((f) => f.kind)).toEqual(['float', 'quantized', 'adapter', 'float']);
    expect(kinds.map((f) => f.config.sharing.strategy)).toEqual(['none', 'none', 'none', 'immediate']);
    const adapter = kinds[2];
    expect(adapter).toMatchObject({ modelDir: dirs.float, tokenizerDir: dirs.float, configJson: null, quantization: null });
    expect(adapter.adapter?.options).toMatchObject({ rank: 4, alpha: 8, targets: ['q', 'v', 'down'] });
    expect(kinds[1].quantization?.method).toBe('w8a8');
  });

  it('takes the tokenizer of an adapter that carries one', () => {
    const own = path.join(tmp, 'adapter-with-tokenizer');
    fs.cpSync(dirs.adapter, own, { recursive: true });
    fs.writeFileSync(path.join(own, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
    expect(readModelFolder(own)).toMatchObject({ modelDir: dirs.float, tokenizerDir: own });
  });

  it.each([
    ['missing', () => path.join(tmp, 'nowhere'), (d: string) => `${d}: folder not found`, 'not_found'],
    ['empty', () => dirs.empty, (d: string) => `${d}: not a model folder (no config.json or adapter_config.json)`, 'bad_input'],
    ['orphan adapter', () => dirs.orphan, (d: string) => `${d}: the adapter's base model ${path.join(tmp, 'gone')} is not on this machine`, 'bad_input'],
    [
      'adapter of a quantized model',
      () => adapterOf(dirs.quantized),
      (d: string) => `${d}: the adapter's base model ${dirs.quantized} is quantized; a LoRA adapter applies to a float model`,
      'bad_input',
    ],
  ])('refuses a %s folder in one line', (_, make, message, kind) => {
    const dir = make();
    let err: unknown;
    try {
      readModelFolder(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnusableFolderError);
    expect((err as UnusableFolderError).message).toBe(message(dir));
    expect((err as UnusableFolderError).kind).toBe(kind);
  });
});

function adapterOf(base: string): string {
  const dir = path.join(tmp, `adapter-of-${path.basename(base)}`);
  fs.cpSync(dirs.adapter, dir, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG), 'utf8'));
  fs.writeFileSync(path.join(dir, ADAPTER_CONFIG), JSON.stringify({ ...cfg, base_model_name_or_path: base }));
  return dir;
}

describe('every command on every kind of folder', () => {
  it('mlw score: each kind scores; the adapter as its merged model', async () => {
    const s = await byKind([...KINDS, 'merged'], (k) => ok<Scores>(['score', dirs[k], '--ids', IDS]));
    for (const k of KINDS) expect(s[k].logprobs).toHaveLength(5);
    expect(Math.abs(s.adapter.nll - s.merged.nll)).toBeLessThan(1e-4);
    expect(Math.abs(s.adapter.nll - s.float.nll)).toBeGreaterThan(1e-2); // the adapter changes the model
    expect(Math.abs(s.quantized.nll - s.float.nll)).toBeLessThan(0.05 * s.float.nll); // w8a8 stays close
  });

  it('mlw tokenize: the adapter uses its base model’s tokenizer', async () => {
    const t = await byKind(KINDS, (k) => ok<{ ids: number[] }>(['tokenize', dirs[k], '--text', '3+4=7']));
    expect(t.float.ids.length).toBeGreaterThan(3);
    for (const k of KINDS) expect(t[k].ids).toEqual(t.float.ids);
  });

  it('mlw info: kind, format and quantization; an adapter shows its base architecture and its LoRA options', async () => {
    const { float, quantized, adapter, shared } = await byKind(KINDS, (k) => ok<Info>(['info', dirs[k]]));
    expect([float, quantized, adapter, shared].map((i) => [i.kind, i.format])).toEqual([
      ['float', 'safetensors'],
      ['quantized', 'safetensors'],
      ['adapter', 'peft-lora'],
      ['float', 'safetensors'],
    ]);
    expect(quantized.quantization!.method).toBe('w8a8');
    expect(adapter.adapter).toMatchObject({ base: path.resolve(dirs.float), rank: 4, alpha: 8, targets: ['q', 'v', 'down'] });
    expect(adapter.params).toEqual(float.params);
    expect(shared.schedule).toEqual([0, 0, 1, 1, 2, 2]);
    expect(float.adapter).toBeNull();
  });

  it('mlw generate: each kind generates; the adapter the tokens of its merged model', async () => {
    const g = await byKind([...KINDS, 'merged'], (k) =>
      ok<{ ids: number[] }>(['generate', dirs[k], '--prompt-ids', '1,5,9', '--max-new-tokens', '4', '--temperature', '0', '--no-eos']),
    );
    for (const k of KINDS) expect(g[k].ids).toHaveLength(4);
    expect(g.adapter.ids).toEqual(g.merged.ids);
  });

  it('mlw eval: each kind evaluates and is recorded; the adapter has its merged model’s perplexity', async () => {
    const e = await byKind([...KINDS, 'merged'], (k) =>
      ok<{ reportId: number; model: { format: string }; ppl: number }>(['eval', dirs[k], '--text', TEXT, '--window', '32']),
    );
    for (const k of KINDS) expect(e[k].reportId).toBeGreaterThan(0);
    expect(e.adapter.model.format).toBe('peft-lora');
    expect(Math.abs(e.adapter.ppl - e.merged.ppl)).toBeLessThan(1e-3 * e.merged.ppl);
  });

  it('mlw quantize: float, shared and adapter (merged first) are quantized; a quantized folder is refused', async () => {
    const out = (k: string) => path.join(tmp, `q-${k}`);
    for (const k of ['float', 'shared', 'adapter'] as const) {
      const r = await ok<{ output: { path: string } }>(['quantize', dirs[k], '--method', 'w8', '--eval-text', SHORT_TEXT, '--out', out(k)]);
      expect(r.output.path).toBe(path.resolve(out(k)));
      expect(readModelFolder(out(k)).quantization?.method).toBe('w8');
    }
    // The adapter's quantized model scores as its merged model does, give or take int8 rounding.
    const a = await ok<Scores>(['score', out('adapter'), '--ids', IDS]);
    const m = await ok<Scores>(['score', dirs.merged, '--ids', IDS]);
    expect(Math.abs(a.nll - m.nll)).toBeLessThan(0.05 * m.nll);
    expect(await refused(['quantize', dirs.quantized, '--method', 'w8', '--eval-text', SHORT_TEXT, '--out', out('again')])).toBe(
      `mlw: error: ${dirs.quantized}: already quantized (w8a8); quantize the float model it was made from`,
    );
  });

  it('mlw inspect: float, shared and adapter (merged) are analysed; a quantized folder is refused', async () => {
    const { float, adapter, shared, merged } = await byKind(['float', 'adapter', 'shared', 'merged'], (k) =>
      ok<InspectReport>(['inspect', dirs[k], '--probe-ids', IDS]),
    );
    expect(shared.analysis!.schedule).toEqual([0, 0, 1, 1, 2, 2]);
    expect(adapter.target.path).toBe(path.resolve(dirs.adapter));
    expect(adapter.analysis!.weights).toEqual(merged.analysis!.weights);
    expect(adapter.analysis!.weights).not.toEqual(float.analysis!.weights);
    expect(await refused(['inspect', dirs.quantized, '--probe-ids', IDS])).toBe(
      `mlw: error: ${dirs.quantized}: a quantized model; the analysis needs float weights (inspect its float source, or a preset for costs)`,
    );
  });

  it.each(['empty', 'orphan', 'oversized'] as const)('every command gives the same one-line reason for the %s folder', async (which) => {
    const dir = dirs[which];
    const reason = reasonOf(dir);
    for (const [name, args] of commands(dir, path.join(tmp, `out-${which}`))) {
      if (which === 'oversized' && name === 'tokenize') continue; // its tokenizer is fine, and tokenizing reads nothing else
      expect(await refused(args), name).toBe(`mlw: error: ${reason}`);
    }
  });
});

describe('the engine service and a folder it cannot use', () => {
  it('refuses to import an oversized config, and answers models.get of a stored folder whose config went bad', async () => {
    const store = openStore({ home: path.join(tmp, 'service-home') });
    try {
      const service = new EngineService(store, 'test');
      expect(reasonOf(dirs.oversized)).toBe(`${path.join(dirs.oversized, 'config.json')}: invalid "num_hidden_layers": at most 1024`);
      await expect(service.handle('models.import', { path: dirs.oversized })).rejects.toMatchObject({
        code: 'bad_request',
        message: `cannot import: ${reasonOf(dirs.oversized)}`,
      });
      const later = path.join(tmp, 'goes-bad');
      fs.cpSync(dirs.float, later, { recursive: true });
      const { id } = (await service.handle('models.import', { path: later })) as { id: number };
      oversize(later);
      // As at every start: the stored row's details, with the reason instead of a crash.
      expect(await service.handle('models.get', { id })).toMatchObject({ model: { id }, config: null, schedule: null, problem: reasonOf(later) });
      expect(((await service.handle('models.list', {})) as { id: number }[]).map((m) => m.id)).toEqual([id]);
    } finally {
      store.close();
    }
  });
});
