// Hugging Face model folders: config.json plus model.safetensors, a sharded
// model.safetensors.index.json, or pytorch_model.bin (single or sharded),
// in float32, float16 or bfloat16 (always computed in float32).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { configFromHf, configToHf, type MobileLLMConfig } from '../model/config';
import { MobileLLM, weightsFromCheckpoint } from '../model/model';
import { expectedShapes, type Layout } from '../model/layout';
import { SafetensorsFile, safetensorsHeader } from './safetensors';
import { openTorchBin } from './torch-bin';
import { f32ToF16Bits, finiteFloat32, type DType, type RawTensor } from './raw-tensor';
import type { TensorSource } from './tensor-source';
import { writeDirAtomic, writeFileAtomic } from './atomic';
import { remoteCodeFiles } from './remote-code';

export type CheckpointFormat = 'safetensors' | 'safetensors-sharded' | 'pytorch-bin' | 'pytorch-bin-sharded';

/** Buffers older LLaMA checkpoints carry that are not parameters. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

/** Several shards behind one index.json, seen as one source. */
class ShardedSource implements TensorSource {
  private readonly open = new Map<string, TensorSource>();

  constructor(
    readonly path: string,
    private readonly weightMap: Record<string, string>,
    private readonly openShard: (file: string) => TensorSource,
  ) {}

  private shard(name: string): TensorSource {
    const file = this.weightMap[name];
    if (!file) throw new Error(`${this.path}: no tensor "${name}"`);
    let src = this.open.get(file);
    if (!src) {
      const full = path.join(path.dirname(this.path), file);
      if (!fs.existsSync(full)) throw new Error(`${this.path}: shard ${file} (holding "${name}") is missing`);
      src = this.openShard(full);
      this.open.set(file, src);
    }
    return src;
  }

  names(): string[] {
    return Object.keys(this.weightMap);
  }

  info(name: string) {
    return this.shard(name).info(name);
  }

  read(name: string): RawTensor {
    return this.shard(name).read(name);
  }

  close(): void {
    for (const s of this.open.values()) s.close();
    this.open.clear();
  }
}

function readIndex(file: string): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
  const map = (json as { weight_map?: unknown })?.weight_map;
  if (typeof map !== 'object' || map === null || !Object.values(map).every((v) => typeof v === 'string')) {
    throw new Error(`${file}: missing or malformed "weight_map"`);
  }
  return map as Record<string, string>;
}

/** Opens the weights of a model folder, whichever of the four layouts it uses. */
export function openWeights(dir: string): { source: TensorSource; format: CheckpointFormat } {
  const p = (f: string) => path.join(dir, f);
  if (fs.existsSync(p('model.safetensors'))) return { source: SafetensorsFile.open(p('model.safetensors')), format: 'safetensors' };
  if (fs.existsSync(p('model.safetensors.index.json'))) {
    const idx = p('model.safetensors.index.json');
    return { source: new ShardedSource(idx, readIndex(idx), (f) => SafetensorsFile.open(f)), format: 'safetensors-sharded' };
  }
  if (fs.existsSync(p('pytorch_model.bin'))) return { source: openTorchBin(p('pytorch_model.bin')), format: 'pytorch-bin' };
  if (fs.existsSync(p('pytorch_model.bin.index.json'))) {
    const idx = p('pytorch_model.bin.index.json');
    return { source: new ShardedSource(idx, readIndex(idx), openTorchBin), format: 'pytorch-bin-sharded' };
  }
  throw new Error(`${dir}: no weights found (expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json)`);
}

export function readConfigJson(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(dir)) throw new Error(`${dir}: folder not found`);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no config.json (not a Hugging Face model folder)`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
}

export function readConfig(dir: string): MobileLLMConfig {
  return configFromHf(readConfigJson(dir), path.join(dir, 'config.json'));
}

export interface LoadOptions {
  /** Wrap each parameter (already in the model's layout), e.g. in tf.variable for training. */
  wrap?: (t: tf.Tensor, name: string) => tf.Tensor;
  /** The tensors to expect (default: MobileLLM's, engine/model/layout.ts). */
  layout?: Layout;
}

export interface LoadedModel {
  model: MobileLLM;
  format: CheckpointFormat;
  /** dtype the weights were stored in (the most common one). */
  storedDtype: DType;
}

/**
 * Checks the names and shapes of a float checkpoint against the config: every
 * missing, unexpected or mis-shaped tensor is an error naming it. (Quantized
 * checkpoints have their own: engine/quant/checkpoint.ts.)
 */
export function checkTensorNames(source: TensorSource, c: MobileLLMConfig, layout?: Layout): void {
  const expected = expectedShapes(c, layout);
  for (const name of source.names()) {
    if (IGNORED.test(name)) continue;
    if (name === 'lm_head.weight' && c.shareEmbedding) continue; // a tied head saved twice: the embedding wins
    const shape = expected.get(name);
    if (!shape) throw new Error(`${source.path}: unexpected tensor "${name}" (not part of this MobileLLM config)`);
    const info = source.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${source.path}: tensor "${name}" has shape [${info.shape}], expected [${shape}]`);
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
      throw new Error(`${source.path}: tensor "${name}" has dtype ${info.dtype}; expected a float type`);
    }
  }
  const have = new Set(source.names());
  for (const name of expected.keys()) {
    if (!have.has(name)) throw new Error(`${source.path}: missing tensor "${name}"`);
  }
}

/** Loads a float Hugging Face model folder into a MobileLLM (weights in float32; engine/folder opens every kind). */
export function loadModel(dir: string, opts: LoadOptions = {}): LoadedModel {
  const config = readConfig(dir);
  const { source, format } = openWeights(dir);
  try {
    checkTensorNames(source, config, opts.layout);
    const dtypes = new Map<DType, number>();
    const get = (name: string) => {
      const raw = source.read(name);
      dtypes.set(raw.dtype, (dtypes.get(raw.dtype) ?? 0) + 1);
      return tf.tensor(finiteFloat32(raw, source.path, name), raw.shape, 'float32');
    };
    const weights = weightsFromCheckpoint(config, get, opts.wrap, opts.layout);
    const storedDtype = [...dtypes.entries()].sort((a, b) => b[1] - a[1])[0][0];
    return { model: new MobileLLM(config, weights, opts.layout), format, storedDtype };
  } finally {
    source.close();
  }
}

export type SaveDtype = 'float32' | 'float16';

/** The model's parameters in checkpoint layout, as RawTensors (one at a time, to bound memory). */
export function* checkpointTensors(model: MobileLLM, dtype: SaveDtype = 'float32'): Generator<[string, RawTensor]> {
  for (const [name, ref] of model.namedParams()) {
    const t = ref.transposed ? tf.transpose(ref.tensor) : ref.tensor;
    const values = t.dataSync() as Float32Array;
    if (t !== ref.tensor) t.dispose();
    const shape = ref.transposed ? [...ref.tensor.shape].reverse() : [...ref.tensor.shape];
    if (dtype === 'float16') {
      const bits = f32ToF16Bits(values);
      yield [name, { dtype: 'F16', shape, data: new Uint8Array(bits.buffer) }];
    } else {
      yield [name, { dtype: 'F32', shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) }];
    }
  }
}

/** Tokenizer and generation files copied along when a model is saved from another folder. */
export const TOKENIZER_FILES = ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];

export interface SaveOptions {
  dtype?: SaveDtype;
  /** Copy tokenizer files from this folder. */
  tokenizerFrom?: string;
  /** Extra keys for config.json (e.g. a quantization block). */
  configExtra?: Record<string, unknown>;
  /** Extra files to write (name → contents). */
  extraFiles?: Record<string, string | Uint8Array>;
}

/** Writes config.json + model.safetensors (+ tokenizer files) as one atomic folder. */
export async function saveModel(model: MobileLLM, dir: string, opts: SaveOptions = {}): Promise<void> {
  const dtype = opts.dtype ?? 'float32';
  await writeDirAtomic(dir, (tmp) => {
    writeModelFiles(model, tmp, dtype, opts);
  });
}

/**
 * Writes config.json + model.safetensors (+ tokenizer and extra files, and the
 * modeling file a layer-shared config names) into `dir`, each file atomically.
 */
export function writeModelFiles(model: MobileLLM, dir: string, dtype: SaveDtype, opts: SaveOptions = {}): void {
  const entries = [...model.namedParams()].map(([name, ref]): [string, number[]] => [
    name,
    ref.transposed ? [...ref.tensor.shape].reverse() : [...ref.tensor.shape],
  ]);
  writeTensorFiles(model.config, entries, checkpointTensors(model, dtype), dir, dtype, opts);
}

/**
 * writeModelFiles for tensors given by name and shape (checkpoint layout),
 * `tensors` yielding their data in that order (one at a time, to bound memory).
 */
export function writeTensorFiles(
  config: MobileLLMConfig,
  shapes: [string, number[]][],
  tensors: Iterable<[string, RawTensor]>,
  dir: string,
  dtype: SaveDtype,
  opts: SaveOptions = {},
): void {
  const cfg = configToHf({ ...config, torchDtype: dtype }, opts.configExtra);
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  // The header needs every tensor's shape; the data is streamed tensor by tensor.
  const header = safetensorsHeader(
    shapes.map(([name, shape]) => [name, { dtype: dtype === 'float16' ? 'F16' : 'F32', shape }]),
    { format: 'pt' }, // transformers' save_pretrained writes this too
  );
  writeFileAtomic(
    path.join(dir, 'model.safetensors'),
    (function* () {
      yield header;
      for (const [, raw] of tensors) yield raw.data;
    })(),
  );
  if (opts.tokenizerFrom) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(opts.tokenizerFrom, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dir, f));
    }
  }
  for (const [name, contents] of Object.entries({ ...remoteCodeFiles(config), ...opts.extraFiles })) {
    writeFileAtomic(path.join(dir, name), contents);
  }
}
