// GGUF exports checked by the real llama.cpp (built from ../shared/vendor by
// .ci/run; test/gguf/llama-cpp.ts finds it): llama.cpp loads what we write and
// agrees with our engine, and what we write imports back with the same scores.
//
//   f32    identical greedy tokens, per-token log-probs within 1e-3 (measured ~2e-6
//          with a float32 KV cache), the same tokens for the whole held-out text
//   f16    llama-perplexity on the held-out text within 0.5 % of ours over the same windows
//   q8_0   llama-perplexity of the q8_0 file within 0.5 % of ours on the same weights
//   q4_0   (the file imported, dequantized) — what is left is llama.cpp rounding the
//          activations to Q8_0 blocks in its quantized matmuls — and within the
//          weight error of each type of our float model (bounds at QUANT_BOUNDS)
//
// and the same for a layer-shared model (reverse ×2: every block runs twice,
// written as twice its blocks in llama layers), a LoRA adapter (merged) and a w8-quantized
// folder; Meta's sentencepiece tokenizer in a GGUF tokenizes the golden cases
// in llama.cpp as sentencepiece does.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { exportGguf, type GgufType } from '../engine/export/gguf';
import { GgufFile, writeGguf } from '../engine/export/gguf-file';
import { decodeTensor } from '../engine/export/gguf-quant';
import { importGguf } from '../engine/export/gguf-import';
import { openRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { loadModel } from '../engine/io/checkpoint';
import { toFloat32 } from '../engine/io/raw-tensor';
import { readSafetensors } from '../engine/io/safetensors';
import { quietContext } from '../engine/jobs/job';
import { saveQuantizedModel } from '../engine/quant/checkpoint';
import { quantizeModel } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import type { InferenceRuntime } from '../engine/runtime/runtime';
import { loadTokenizer } from '../engine/tokenizer/tokenizer';
import { trainBpe, trainedBpeToJson } from '../engine/tokenizer/train-bpe';
import { LoraSettings } from '../engine/train/config';
import { peftKey, writeAdapterTensors } from '../engine/train/lora';
import { linearShapes } from '../engine/model/layout';
import { buildTool, describeWithLlamaCpp, llamaPerplexity, llamaScores, llamaTokenize, runLlamaCpp } from './gguf/llama-cpp';

const DEFAULT_MODEL = path.resolve(import.meta.dirname, '../resources/default-model');
const HELD_OUT = path.resolve(import.meta.dirname, '../resources/eval/held-out.txt');
const reference = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'fixtures/default-model/transformers.json'), 'utf8')) as {
  cases: { text: string }[];
};
const N_CTX = 256;
const GREEDY = 24;

/**
 * |ppl(llama.cpp) / ppl(ours) − 1| allowed, per type. `same`: ours scores the
 * file's own weights (imported, dequantized), so only llama.cpp's Q8_0
 * activation rounding remains (≤ 1/254 of a 32-block's largest |x| per value,
 * mostly averaging out over a dot product). `float`: ours is the float model,
 * so the weight rounding adds in: Q8_0's ≤ d/2 = amax/254 per weight barely
 * moves a perplexity (well under 0.5 %); Q4_0's amax/16 is 16× coarser, a few
 * percent at most. Measured on the previous 9.4M default model (ppl 221.42 in
 * float): q8_0 221.40 (llama.cpp) vs 221.40 (ours, same weights); q4_0 222.02 vs
 * 222.05. The 13.85M default model, better trained, loses more to Q4_0: +4.2 %.
 */
const QUANT_BOUNDS: Record<'q8_0' | 'q4_0', { same: number; float: number }> = {
  q8_0: { same: 0.005, float: 0.005 },
  q4_0: { same: 0.005, float: 0.06 },
};

let tmp: string;
let tool: string;
const runtimes: InferenceRuntime[] = [];

async function runtimeOf(dir: string): Promise<InferenceRuntime> {
  const { runtime } = await openRuntime(readModelFolder(dir), { runtime: 'onnx' });
  runtimes.push(runtime);
  return runtime;
}

/** Our greedy continuation of `ids` (argmax, lowest id on ties, as the llama.cpp tool). */
async function ourGreedy(runtime: InferenceRuntime, ids: number[], n: number): Promise<number[]> {
  const cache = runtime.newCache();
  const out: number[] = [];
  let input = ids;
  try {
    for (let i = 0; i < n; i++) {
      const logits = await runtime.nextLogits(input, cache);
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
      out.push(best);
      input = [best];
    }
  } finally {
    cache.dispose();
  }
  return out;
}

/** Our perplexity over llama-perplexity's windows: chunks of nCtx tokens, BOS first, the second half of each scored. */
async function ourPerplexity(runtime: InferenceRuntime, ids: number[], bos: number, nCtx: number): Promise<number> {
  const first = nCtx / 2;
  let nll = 0;
  let count = 0;
  for (let start = 0; start + nCtx <= ids.length; start += nCtx) {
    const chunk = ids.slice(start, start + nCtx);
    chunk[0] = bos;
    const { logprobs } = await runtime.score(chunk);
    for (let j = first; j < nCtx - 1; j++) {
      nll -= logprobs[j];
      count++;
    }
  }
  return Math.exp(nll / count);
}

const ggufOf = (dir: string, type: GgufType) => path.join(tmp, `${path.basename(dir)}-${type}`, `model-${type}.gguf`);

async function exportAll(dir: string, types: GgufType[]): Promise<void> {
  for (const type of types) await exportGguf(dir, path.dirname(ggufOf(dir, type)), { type });
}

/** A copy of the default model whose 10 blocks run forward then backward (20 layers). */
function sharedModel(): string {
  const dir = path.join(tmp, 'shared');
  fs.cpSync(DEFAULT_MODEL, dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  Object.assign(config, { layer_sharing: true, layer_sharing_strategy: 'reverse', layer_sharing_repeats: 2 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** Deterministic small values in ±0.02. */
function sample(n: number, seed: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.04);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
const relative = (theirs: number, ours: number) => Math.abs(theirs / ours - 1);

describeWithLlamaCpp('GGUF export checked by llama.cpp', () => {
  const tokenizer = loadTokenizer(DEFAULT_MODEL);
  const cases = reference.cases.map((c) => tokenizer.encode(c.text, { bos: true }));
  let heldOut: number[];
  let shared: string;
  let floatPerplexity: number | undefined;

  beforeAll(async () => {
    await initBackend('wasm');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-gguf-'));
    tool = buildTool('logprobs', tmp);
    heldOut = tokenizer.encode(fs.readFileSync(HELD_OUT, 'utf8'), { bos: true });
    shared = sharedModel();
    await exportAll(DEFAULT_MODEL, ['f32', 'f16', 'q8_0', 'q4_0']);
    await exportAll(shared, ['f32']);
  }, 300_000);
  afterAll(async () => {
    for (const r of runtimes.splice(0)) await r.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('f32: llama.cpp tokenizes the held-out text as we do', () => {
    expect(llamaTokenize(ggufOf(DEFAULT_MODEL, 'f32'), HELD_OUT)).toEqual(heldOut);
    expect(heldOut.length).toBeGreaterThan(2 * N_CTX);
  });

  it.each([
    ['the default model', () => DEFAULT_MODEL],
    ['a layer-shared model (reverse ×2)', () => shared],
  ])('f32: %s gives our greedy tokens and log-probs within 1e-3', async (_, dirOf) => {
    const dir = dirOf();
    const runtime = await runtimeOf(dir);
    for (const ids of cases) {
      const theirs = llamaScores(tool, ggufOf(dir, 'f32'), ids, GREEDY, tmp);
      const ours = await runtime.score(ids);
      expect(theirs.ids).toEqual(ids);
      expect(maxAbsDiff(theirs.logprobs, ours.logprobs)).toBeLessThan(1e-3);
      expect(theirs.greedy).toEqual(await ourGreedy(runtime, ids, GREEDY));
    }
  });

  it('f16: llama-perplexity on the held-out text is within 0.5 % of ours', async () => {
    floatPerplexity ??= await ourPerplexity(await runtimeOf(DEFAULT_MODEL), heldOut, tokenizer.bosId, N_CTX);
    const theirs = llamaPerplexity(ggufOf(DEFAULT_MODEL, 'f16'), HELD_OUT, N_CTX);
    const ours = floatPerplexity;
    expect(relative(theirs, ours)).toBeLessThan(0.005);
  }, 300_000);

  it.each(['q8_0', 'q4_0'] as const)(
    '%s: llama-perplexity agrees with ours on the same weights and stays near the float model',
    async (type) => {
      const file = ggufOf(DEFAULT_MODEL, type);
      const imported = (await importGguf(file, path.join(tmp, `imported-${type}`))).outDir;
      const same = await ourPerplexity(await runtimeOf(imported), heldOut, tokenizer.bosId, N_CTX);
      floatPerplexity ??= await ourPerplexity(await runtimeOf(DEFAULT_MODEL), heldOut, tokenizer.bosId, N_CTX);
      const float = floatPerplexity;
      const theirs = llamaPerplexity(file, HELD_OUT, N_CTX);
      expect(relative(theirs, same)).toBeLessThan(QUANT_BOUNDS[type].same);
      expect(relative(theirs, float)).toBeLessThan(QUANT_BOUNDS[type].float);
      expect(relative(same, float)).toBeGreaterThan(0); // the weights really were rounded
    },
    300_000,
  );

  it('a LoRA adapter exports merged into its base, and llama.cpp scores it as our engine scores the adapter folder', async () => {
    const adapter = path.join(tmp, 'adapter');
    fs.mkdirSync(adapter);
    const settings = LoraSettings.parse({ rank: 4, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] });
    const c = readModelFolder(DEFAULT_MODEL).config;
    const shapes = linearShapes(c);
    const weights = new Map<string, { values: Float32Array; shape: number[] }>();
    for (let b = 0; b < c.numBlocks; b++) {
      for (const key of settings.targets) {
        const [out, inF] = shapes[key];
        weights.set(peftKey(b, key, 'A'), { values: sample(inF * 4, b * 7 + 1), shape: [inF, 4] });
        weights.set(peftKey(b, key, 'B'), { values: sample(4 * out, b * 7 + 2), shape: [4, out] });
      }
    }
    writeAdapterTensors(weights, settings, adapter, DEFAULT_MODEL);
    const result = await exportGguf(adapter, path.join(tmp, 'adapter-f32'), { type: 'f32' });
    expect(result.notes.join('\n')).toMatch(/merged/);
    const runtime = await runtimeOf(adapter);
    const base = await runtimeOf(DEFAULT_MODEL);
    for (const ids of cases) {
      const theirs = llamaScores(tool, path.join(result.outDir, result.files[0]), ids, GREEDY, tmp);
      const ours = await runtime.score(ids);
      expect(maxAbsDiff(theirs.logprobs, ours.logprobs)).toBeLessThan(1e-3);
      expect(maxAbsDiff(ours.logprobs, (await base.score(ids)).logprobs)).toBeGreaterThan(1e-2); // the adapter changes the model
      expect(theirs.greedy).toEqual(await ourGreedy(runtime, ids, GREEDY));
    }
  });

  it('an untied multi-head model (tiny-untied-mha, a trained 384-piece tokenizer): output.weight written, 48-wide rows in f16 for q8_0', async () => {
    const dir = path.join(tmp, 'untied');
    fs.cpSync(path.join(import.meta.dirname, 'fixtures/golden/tiny-untied-mha'), dir, { recursive: true });
    const trained = trainBpe([fs.readFileSync(HELD_OUT, 'utf8')], { vocabSize: 384 });
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(trainedBpeToJson(trained)));
    await exportAll(dir, ['f32', 'q8_0']);
    const g = GgufFile.open(ggufOf(dir, 'q8_0'));
    try {
      expect(g.tensors.get('output.weight')?.type).toBe('F16'); // ne[0] = hidden = 48 fills no 32-blocks
      expect(g.tensors.get('blk.0.ffn_down.weight')?.type).toBe('Q8_0'); // ne[0] = 128
    } finally {
      g.close();
    }
    const runtime = await runtimeOf(dir);
    const untiedTokenizer = loadTokenizer(dir);
    const text = fs.readFileSync(HELD_OUT, 'utf8').slice(0, 300);
    const ids = untiedTokenizer.encode(text, { bos: true }).slice(0, 200);
    const theirs = llamaScores(tool, ggufOf(dir, 'f32'), ids, 1, tmp);
    expect(maxAbsDiff(theirs.logprobs, (await runtime.score(ids)).logprobs)).toBeLessThan(1e-3);
    const q8 = (await importGguf(ggufOf(dir, 'q8_0'), path.join(tmp, 'untied-q8_0-imported'))).outDir;
    const q8Theirs = llamaScores(tool, ggufOf(dir, 'q8_0'), ids, 1, tmp).logprobs;
    // llama.cpp rounds activations (f16 for f16 weights, Q8_0 for Q8_0): per token ~0.05 nats measured; a wrong block layout costs whole nats
    expect(maxAbsDiff(q8Theirs, (await (await runtimeOf(q8)).score(ids)).logprobs)).toBeLessThan(0.2);
    expect(llamaTokenize(ggufOf(dir, 'f32'), HELD_OUT)).toEqual(untiedTokenizer.encode(fs.readFileSync(HELD_OUT, 'utf8'), { bos: true }));
    const imported = (await importGguf(ggufOf(dir, 'f32'), path.join(tmp, 'untied-imported'))).outDir;
    expect(readModelFolder(imported).config.shareEmbedding).toBe(false);
    expect((await (await runtimeOf(imported)).score(ids)).logprobs).toEqual((await runtime.score(ids)).logprobs);
  });

  it('a w8-quantized folder exports dequantized, then as q8_0, and llama.cpp scores it as our quantized folder does', async () => {
    const { model } = loadModel(DEFAULT_MODEL);
    const w8 = path.join(tmp, 'w8');
    try {
      await saveQuantizedModel(await quantizeModel(model, resolveSpec(model.config, { method: 'w8' }), quietContext()), w8, { tokenizerFrom: DEFAULT_MODEL });
    } finally {
      model.dispose();
    }
    const result = await exportGguf(w8, path.join(tmp, 'w8-q8_0'), { type: 'q8_0' });
    expect(result.notes.join('\n')).toMatch(/dequantized/);
    const ours = await ourPerplexity(await runtimeOf(w8), heldOut, tokenizer.bosId, N_CTX);
    const theirs = llamaPerplexity(path.join(result.outDir, result.files[0]), HELD_OUT, N_CTX);
    expect(relative(theirs, ours)).toBeLessThan(QUANT_BOUNDS.q8_0.float); // w8 then q8_0: two roundings of 1/254
  }, 300_000);
});

const META_TOKENIZER = path.resolve(import.meta.dirname, '../../shared/reference/mobilellm-tokenizer');
const hasMetaTokenizer = fs.existsSync(path.join(META_TOKENIZER, 'tokenizer.model'));

describeWithLlamaCpp("GGUF export of Meta's sentencepiece tokenizer", () => {
  let dir: string;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-gguf-spm-'));
    tool = buildTool('logprobs', tmp);
    dir = path.join(tmp, 'realvocab');
    fs.cpSync(path.join(import.meta.dirname, 'fixtures/golden/tiny-realvocab'), dir, { recursive: true });
    if (hasMetaTokenizer) for (const f of ['tokenizer.model', 'tokenizer_config.json']) fs.copyFileSync(path.join(META_TOKENIZER, f), path.join(dir, f));
  });
  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it.skipIf(!hasMetaTokenizer)(
    'llama.cpp tokenizes the golden sentencepiece cases as sentencepiece does (tokenizer.model scores written as they are)',
    async () => {
      await exportAll(dir, ['f32']);
      const cases = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'fixtures/tokenizer/cases.json'), 'utf8')) as {
        text: string;
        ids_with_bos: number[];
      }[];
      const file = path.join(tmp, 'texts.bin');
      fs.writeFileSync(file, cases.map((c) => c.text).join('\0'));
      const { tokens } = JSON.parse(runLlamaCpp(tool, [ggufOf(dir, 'f32'), 'texts', file, '0'])) as { tokens: number[][] };
      expect(tokens.length).toBe(cases.length);
      cases.forEach((c, i) => expect(tokens[i], JSON.stringify(c.text)).toEqual(c.ids_with_bos));
    },
  );
});

describeWithLlamaCpp('GGUF import', () => {
  const tokenizer = loadTokenizer(DEFAULT_MODEL);
  const cases = reference.cases.map((c) => tokenizer.encode(c.text, { bos: true }));

  beforeAll(async () => {
    await initBackend('wasm');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-gguf-import-'));
    await exportAll(DEFAULT_MODEL, ['f32', 'f16', 'q8_0']);
  });
  afterAll(async () => {
    for (const r of runtimes.splice(0)) await r.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it.each(['f32', 'f16'] as const)('%s: the imported folder scores exactly as the model it came from', async (type) => {
    const out = (await importGguf(ggufOf(DEFAULT_MODEL, type), path.join(tmp, `imported-${type}`))).outDir;
    expect(readModelFolder(out).kind).toBe('float');
    const ours = await runtimeOf(DEFAULT_MODEL);
    const again = await runtimeOf(out);
    const imported = loadTokenizer(out);
    for (const ids of cases) {
      expect(imported.encode(tokenizer.decode(ids.slice(1)), { bos: true })).toEqual(ids);
      expect((await again.score(ids)).logprobs).toEqual((await ours.score(ids)).logprobs); // the default model's weights are float16: both round trips are exact
    }
  });

  it('q8_0: the imported folder holds the dequantized blocks of the file', async () => {
    const file = ggufOf(DEFAULT_MODEL, 'q8_0');
    const out = (await importGguf(file, path.join(tmp, 'imported-q8_0'))).outDir;
    const g = GgufFile.open(file);
    const ref = GgufFile.open(ggufOf(DEFAULT_MODEL, 'f32'));
    try {
      // ffn_down is not permuted: the imported tensor is the file's blocks decoded, in the checkpoint's layout.
      const t = g.tensors.get('blk.3.ffn_down.weight')!;
      const n = t.ne[0] * t.ne[1];
      const decoded = decodeTensor(g.read(t.name), 'Q8_0', n);
      const exact = decodeTensor(ref.read(t.name), 'F32', n);
      const held = readSafetensors(path.join(out, 'model.safetensors')).tensors.get('model.layers.3.mlp.down_proj.weight')!;
      expect(held.shape).toEqual([t.ne[1], t.ne[0]]);
      expect(Array.from(toFloat32(held))).toEqual(Array.from(decoded));
      expect(maxAbsDiff(decoded, exact)).toBeGreaterThan(0);
    } finally {
      g.close();
      ref.close();
    }
  });

  it('a layer-shared GGUF of ours folds back to its physical blocks', async () => {
    const dir = path.join(tmp, 'shared');
    fs.cpSync(DEFAULT_MODEL, dir, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    Object.assign(config, { layer_sharing: true, layer_sharing_strategy: 'reverse', layer_sharing_repeats: 2 });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    await exportAll(dir, ['f32']);
    expect(GgufFile.open(ggufOf(dir, 'f32')).scalar('llama.block_count')).toBe(2 * config.num_hidden_layers);
    const out = (await importGguf(ggufOf(dir, 'f32'), path.join(tmp, 'imported-shared'))).outDir;
    const folder = readModelFolder(out);
    expect(folder.config.numBlocks).toBe(config.num_hidden_layers);
    expect(folder.config.sharing).toEqual({ strategy: 'reverse', repeats: 2 });
    const ours = await runtimeOf(dir);
    const again = await runtimeOf(out);
    for (const ids of cases) expect((await again.score(ids)).logprobs).toEqual((await ours.score(ids)).logprobs);
  });

  it('a GGUF without our tokenizer.json (one made elsewhere) gets a tokenizer rebuilt from its scores that tokenizes as llama.cpp does', async () => {
    const src = GgufFile.open(ggufOf(DEFAULT_MODEL, 'f16'));
    const file = path.join(tmp, 'foreign.gguf');
    try {
      const metadata = new Map([...src.metadata].filter(([k]) => k !== 'tokenizer.huggingface.json' && !k.startsWith('mobilellm.')));
      writeGguf(
        file,
        metadata,
        [...src.tensors.values()].map((t) => ({ name: t.name, ne: t.ne, type: t.type, data: () => src.read(t.name) })),
      );
    } finally {
      src.close();
    }
    const out = (await importGguf(file, path.join(tmp, 'imported-foreign'))).outDir;
    const rebuilt = loadTokenizer(out);
    const text = fs.readFileSync(HELD_OUT, 'utf8');
    expect(rebuilt.encode(text, { bos: true })).toEqual(llamaTokenize(file, HELD_OUT));
  });
});
