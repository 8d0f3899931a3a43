// Quantized model folders: config.json with a `quantization` block (spec.ts)
// and one model.safetensors holding, in the checkpoint's [out, in] layout:
//
//   <module>.qweight   int8 (w8a8, w8): I8 [out, in], code of weight (j, i)
//                      int4 (w4):       U8 [out, in/2], byte (j, k) = code(j, 2k) | code(j, 2k+1) << 4
//                                       (low nibble first, as GPTQ/AWQ)
//   <module>.scales    F32 [out] (int8), F32 [out, in/G] (int4); F16 is read too
//   <module>.zeros     U8 [out, in/G], zero points 0…15 (int4 only)
//   model.embed_tokens.weight / lm_head.weight   F16 [vocab, hidden] when kept in float
//   *_layernorm.weight, model.norm.weight         F32 [hidden]
//
// where <module> is model.layers.<i>.self_attn.{q,k,v,o}_proj,
// model.layers.<i>.mlp.{gate,up,down}_proj, model.embed_tokens (a [vocab, hidden]
// weight: one scale per token, groups along hidden) and lm_head when untied.
// Physical blocks only: a layer-shared block is stored once. In memory the
// matrices are held transposed ([in, out], see codes.ts); the bytes are equal.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { configFromHf, quantizedConfigToHf, type MobileLLMConfig } from '../model/config';
import { MobileLLM, buildWeights, weightOf } from '../model/model';
import { tensorSpecs, type Layout } from '../model/layout';
import { TokenEmbedding } from '../model/embedding';
import { SafetensorsFile, safetensorsHeader } from '../io/safetensors';
import { f32ToF16Bits, finiteFloat32, type DType, type RawTensor } from '../io/raw-tensor';
import type { TensorSource } from '../io/tensor-source';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic';
import { TOKENIZER_FILES, readConfigJson, type LoadOptions, type LoadedModel } from '../io/checkpoint';
import type { QuantizedWeight } from './codes';
import { DequantCache, QuantizedEmbedding, QuantizedLinear } from './quantized-linear';
import { activationQuant, defaultCacheBytes, type QuantizedModel, type QuantizedModelOptions } from './quantize';
import { parseQuantizationBlock, quantizationBlock, type QuantSpec } from './spec';

const FLOATS: DType[] = ['F32', 'F16', 'BF16'];

/** A name only quantized checkpoints have. */
export function isQuantizedTensorName(name: string): boolean {
  return /\.(qweight|scales|zeros)$/.test(name);
}

/** The spec recorded in a folder's config.json, or null for a float model folder. */
export function readQuantization(dir: string): QuantSpec | null {
  const raw = readConfigJson(dir);
  if (raw.quantization === undefined) return null;
  const file = path.join(dir, 'config.json');
  return parseQuantizationBlock(raw.quantization, configFromHf(raw, file), file);
}

// ------------------------------------------------------------ layouts

/** [rows, cols] → [cols, rows], same element type. */
function transpose<T extends Int8Array | Uint8Array | Float32Array>(src: T, rows: number, cols: number): T {
  const out = new (src.constructor as { new (n: number): T })(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

interface Expected {
  dtypes: DType[];
  shape: number[];
}

/** Every tensor a quantized checkpoint of this config and spec holds. */
export function expectedQuantizedTensors(c: MobileLLMConfig, spec: QuantSpec, layout?: Layout): Map<string, Expected> {
  const out = new Map<string, Expected>();
  const quantized = (module: string, [outF, inF]: number[]) => {
    if (spec.method === 'w4') {
      const groups = inF / spec.groupSize!;
      out.set(`${module}.qweight`, { dtypes: ['U8'], shape: [outF, inF / 2] });
      out.set(`${module}.scales`, { dtypes: ['F32', 'F16'], shape: [outF, groups] });
      out.set(`${module}.zeros`, { dtypes: ['U8'], shape: [outF, groups] });
    } else {
      out.set(`${module}.qweight`, { dtypes: ['I8'], shape: [outF, inF] });
      out.set(`${module}.scales`, { dtypes: ['F32', 'F16'], shape: [outF] });
    }
  };
  for (const s of tensorSpecs(c, layout)) {
    if (s.kind === 'norm' || (s.kind !== 'linear' && spec.keepEmbeddingFp)) out.set(s.name, { dtypes: FLOATS, shape: s.shape });
    else quantized(s.module, s.shape);
  }
  return out;
}

/**
 * Checks a quantized checkpoint's names, shapes and dtypes against its config
 * and spec (by default the spec in the config.json next to the weights).
 * Each problem is a one-line error naming the file and the tensor.
 */
export function checkQuantizedTensors(source: TensorSource, c: MobileLLMConfig, spec?: QuantSpec, layout?: Layout): void {
  const dir = path.dirname(source.path);
  const s = spec ?? readQuantization(dir);
  if (!s) throw new Error(`${source.path}: holds quantized tensors but ${path.join(dir, 'config.json')} has no "quantization" block`);
  const expected = expectedQuantizedTensors(c, s, layout);
  for (const name of source.names()) {
    const e = expected.get(name);
    if (!e) throw new Error(`${source.path}: unexpected tensor "${name}" (not part of this ${s.method} model)`);
    const info = source.info(name);
    if (info.shape.length !== e.shape.length || info.shape.some((d, i) => d !== e.shape[i])) {
      throw new Error(`${source.path}: tensor "${name}" has shape [${info.shape}], expected [${e.shape}]`);
    }
    if (!e.dtypes.includes(info.dtype)) throw new Error(`${source.path}: tensor "${name}" has dtype ${info.dtype}, expected ${e.dtypes.join(' or ')}`);
  }
  const have = new Set(source.names());
  for (const name of expected.keys()) {
    if (!have.has(name)) throw new Error(`${source.path}: missing tensor "${name}"`);
  }
}

/** The file tensors of one quantized matrix (memory layout → [out, in] layout). */
function weightTensors(name: string, q: QuantizedWeight): [string, RawTensor][] {
  const bytes = (a: Int8Array | Uint8Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const I = q.inFeatures;
  const O = q.outFeatures;
  if (q.bits === 8) {
    return [
      [`${name}.qweight`, { dtype: 'I8', shape: [O, I], data: bytes(transpose(q.codes, I, O)) }],
      [`${name}.scales`, { dtype: 'F32', shape: [O], data: bytes(q.scales) }],
    ];
  }
  const groups = I / q.groupSize;
  return [
    [`${name}.qweight`, { dtype: 'U8', shape: [O, I / 2], data: transpose(q.packed, I / 2, O) }],
    [`${name}.scales`, { dtype: 'F32', shape: [O, groups], data: bytes(transpose(q.scales, groups, O)) }],
    [`${name}.zeros`, { dtype: 'U8', shape: [O, groups], data: transpose(q.zeros, groups, O) }],
  ];
}

/** A float table (embedding or head, held [hidden, vocab]) as F16 [vocab, hidden]. */
function floatTableTensor(name: string, t: TokenEmbedding): [string, RawTensor] {
  const [hidden, vocab] = t.wT.shape;
  const bits = f32ToF16Bits(transpose(t.wT.dataSync() as Float32Array, hidden, vocab));
  return [name, { dtype: 'F16', shape: [vocab, hidden], data: new Uint8Array(bits.buffer) }];
}

function normTensor(name: string, t: tf.Tensor): [string, RawTensor] {
  const v = t.dataSync() as Float32Array;
  return [name, { dtype: 'F32', shape: [...t.shape], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) }];
}

/** Every tensor of a quantized model, in file order (unique blocks once, a tied head not at all). */
function* quantizedTensors(model: MobileLLM): Generator<[string, RawTensor]> {
  for (const s of model.specs()) {
    const x = weightOf(model.weights, s);
    if (x instanceof tf.Tensor) yield normTensor(s.name, x);
    else if (x instanceof QuantizedLinear) yield* weightTensors(s.module, x.weight);
    else if (x instanceof TokenEmbedding && s.kind !== 'linear') yield floatTableTensor(s.name, x);
    else throw new Error(`${s.module} is not quantized`);
  }
}

export interface SaveQuantizedOptions {
  /** Copy tokenizer files from this folder. */
  tokenizerFrom?: string;
}

/** Writes config.json (with the quantization block) + model.safetensors (+ tokenizer files) as one atomic folder. */
export async function saveQuantizedModel(q: QuantizedModel, dir: string, opts: SaveQuantizedOptions = {}): Promise<void> {
  const { model, spec } = q;
  // Everything is gathered first (the file needs the header before the data);
  // the codes are already a fraction of the float model's size.
  const tensors = [...quantizedTensors(model)];
  await writeDirAtomic(dir, (tmp) => {
    const cfg = quantizedConfigToHf({ ...model.config, torchDtype: 'float32' }, quantizationBlock(spec, model.config));
    writeFileAtomic(path.join(tmp, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    const header = safetensorsHeader(tensors.map(([name, t]) => [name, t]));
    writeFileAtomic(path.join(tmp, 'model.safetensors'), [header, ...tensors.map(([, t]) => t.data)]);
    if (opts.tokenizerFrom) {
      for (const f of TOKENIZER_FILES) {
        const src = path.join(opts.tokenizerFrom, f);
        if (fs.existsSync(src)) fs.copyFileSync(src, path.join(tmp, f));
      }
    }
  });
}

// ------------------------------------------------------------ loading

/** The codes of quantized matrix `name` (no suffix), in memory layout. */
export function readWeight(source: TensorSource, name: string, spec: QuantSpec): QuantizedWeight {
  const q = source.read(`${name}.qweight`);
  const scalesRaw = source.read(`${name}.scales`);
  const scales = finiteFloat32(scalesRaw, source.path, `${name}.scales`);
  if (spec.method === 'w4') {
    const [O, halfIn] = q.shape;
    const I = halfIn * 2;
    const groups = I / spec.groupSize!;
    const zeros = source.read(`${name}.zeros`).data;
    const bad = zeros.findIndex((z) => z > 15);
    if (bad >= 0) throw new Error(`${source.path}: tensor "${name}.zeros" holds ${zeros[bad]} at index ${bad}; int4 zero points are 0…15`);
    return {
      bits: 4,
      inFeatures: I,
      outFeatures: O,
      groupSize: spec.groupSize!,
      packed: transpose(q.data, O, halfIn),
      scales: transpose(scales, O, groups),
      zeros: transpose(zeros, O, groups),
    };
  }
  const [O, I] = q.shape;
  const codes = new Int8Array(q.data.buffer, q.data.byteOffset, q.data.byteLength);
  return { bits: 8, inFeatures: I, outFeatures: O, codes: transpose(codes, O, I), scales };
}

/** A float table stored [vocab, hidden] → TokenEmbedding holding [hidden, vocab]. */
function readFloatTable(source: TensorSource, name: string): TokenEmbedding {
  const raw = source.read(name);
  const [vocab, hidden] = raw.shape;
  return new TokenEmbedding(tf.tensor2d(transpose(finiteFloat32(raw, source.path, name), vocab, hidden), [hidden, vocab]));
}

/** Loads a quantized model folder (codes stay integer in memory). `wrap` (for training) is refused. */
export function loadQuantizedModel(dir: string, opts: QuantizedModelOptions & LoadOptions = {}): LoadedModel & QuantizedModel {
  if (opts.wrap) throw new Error(`${dir}: quantized weights cannot be trained; load the float model it was made from`);
  const file = path.join(dir, 'config.json');
  const raw = readConfigJson(dir);
  const config = configFromHf(raw, file);
  const spec = parseQuantizationBlock(raw.quantization, config, file);
  const weightsFile = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(weightsFile)) throw new Error(`${dir}: a quantized model folder needs model.safetensors`);
  const source = SafetensorsFile.open(weightsFile);
  try {
    checkQuantizedTensors(source, config, spec, opts.layout);
    const cache = new DequantCache(opts.cacheBytes ?? defaultCacheBytes());
    const act = activationQuant(spec);
    const weights = buildWeights(
      config,
      (s) => {
        if (s.kind === 'norm') return tf.tensor1d(finiteFloat32(source.read(s.name), source.path, s.name));
        if (s.kind === 'linear') return new QuantizedLinear(readWeight(source, s.module, spec), act, cache);
        return spec.keepEmbeddingFp ? readFloatTable(source, s.name) : new QuantizedEmbedding(readWeight(source, s.module, spec), act, cache);
      },
      opts.layout,
    );
    const model = new MobileLLM(config, weights, opts.layout);
    return { model, spec, format: 'safetensors', storedDtype: spec.method === 'w4' ? 'U8' : 'I8' };
  } finally {
    source.close();
  }
}
