// Quantizing a float MobileLLM in memory: every linear of every PHYSICAL block
// (a layer-shared block is one block, quantized once; the schedule is kept),
// and the embedding/head unless kept in float16. The result is a new
// MobileLLM; the float model is left as it was.
import * as tf from '@tensorflow/tfjs';
import { MobileLLM, blockLinear, type ModelWeights } from '../model/model';
import { LINEAR_KEYS, LINEAR_NAMES, type LinearKey } from '../model/layout';
import type { BlockWeights } from '../model/block';
import { DenseLinear, type Linear } from '../model/linear';
import { TokenEmbedding } from '../model/embedding';
import { f32ToF16Bits, toFloat32 } from '../io/raw-tensor';
import { throwIfCancelled, type JobContext } from '../jobs/job';
import { quantizeInt4, quantizeInt8, type QuantizedWeight } from './codes';
import { DequantCache, QuantizedEmbedding, QuantizedLinear, type ActivationQuant } from './quantized-linear';
import type { QuantSpec } from './spec';

export interface QuantizedModel {
  model: MobileLLM;
  spec: QuantSpec;
}

export interface QuantizedModelOptions {
  /** Budget of the dequantized-weight cache (default: defaultCacheBytes()). */
  cacheBytes?: number;
}

/**
 * MLW_DEQUANT_CACHE_MB when set, else 0: weights stay integer (≈0.25× of
 * float32 for int8, ≈0.15× for int4) and TensorFlow.js runs at about a third
 * of float32's speed; a budget as large as the float32 weights restores float
 * speed at float memory. (ONNX Runtime, engine/onnx, has integer kernels.)
 */
export function defaultCacheBytes(): number {
  const mb = Number(process.env.MLW_DEQUANT_CACHE_MB ?? 0);
  if (!Number.isFinite(mb) || mb < 0) throw new Error(`MLW_DEQUANT_CACHE_MB: "${process.env.MLW_DEQUANT_CACHE_MB}" is not a size in MB`);
  return mb * 2 ** 20;
}

export function activationQuant(spec: QuantSpec): ActivationQuant {
  return spec.method === 'w8a8' ? 'int8-per-token' : 'none';
}

/** Float weights [in, out] → the spec's integer codes. */
export function quantizeWeight(w: Float32Array, inFeatures: number, outFeatures: number, spec: QuantSpec): QuantizedWeight {
  return spec.method === 'w4' ? quantizeInt4(w, inFeatures, outFeatures, spec.groupSize!) : quantizeInt8(w, inFeatures, outFeatures);
}

/** Float32 values rounded to the nearest float16 (what a kept embedding is stored as). */
function roundToF16(values: Float32Array): Float32Array {
  const bits = f32ToF16Bits(values);
  return toFloat32({ dtype: 'F16', shape: [values.length], data: new Uint8Array(bits.buffer) });
}

/** The checkpoint name of a block linear (no suffix), e.g. model.layers.3.mlp.up_proj. */
export function linearName(block: number, key: LinearKey): string {
  return `model.layers.${block}.${LINEAR_NAMES[key]}`;
}

/** Refuses a model that is not all float (quantizing twice compounds the error). */
function assertFloat(w: ModelWeights): void {
  const quantized = (l: Linear) => l instanceof QuantizedLinear;
  if (quantized(w.embed) || quantized(w.head)) throw new Error('the model is already quantized (model.embed_tokens); quantize the original float model');
  w.blocks.forEach((b, i) => {
    for (const key of LINEAR_KEYS) {
      const lin = blockLinear(b, key);
      if (quantized(lin)) throw new Error(`the model is already quantized (${linearName(i, key)}); quantize the original float model`);
      if (!(lin instanceof DenseLinear)) throw new Error(`${linearName(i, key)} is not a dense float layer (merge adapters before quantizing)`);
    }
  });
}

function floatValues(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

/** Quantizes `model` (float) with `spec`. Reports progress per layer and honours the signal. */
export async function quantizeModel(
  model: MobileLLM,
  spec: QuantSpec,
  ctx: JobContext,
  opts: QuantizedModelOptions = {},
): Promise<QuantizedModel> {
  const w = model.weights;
  const c = model.config;
  assertFloat(w);
  const cache = new DequantCache(opts.cacheBytes ?? defaultCacheBytes());
  const act = activationQuant(spec);
  const embeddings = c.shareEmbedding ? 1 : 2;
  const total = c.numBlocks * LINEAR_KEYS.length + embeddings;
  let done = 0;
  const step = async (what: string) => {
    ctx.progress({ phase: `quantizing ${what}`, done: ++done, total, unit: 'layers' });
    await new Promise((r) => setImmediate(r)); // let a cancel request in
    throwIfCancelled(ctx.signal);
  };
  const made: (Linear | tf.Tensor)[] = [];
  try {
    const table = async (t: TokenEmbedding, name: string): Promise<TokenEmbedding | QuantizedEmbedding> => {
      const [hidden, vocab] = t.wT.shape;
      const out = spec.keepEmbeddingFp
        ? new TokenEmbedding(tf.tensor2d(roundToF16(floatValues(t.wT)), [hidden, vocab]))
        : new QuantizedEmbedding(quantizeWeight(floatValues(t.wT), hidden, vocab, spec), act, cache);
      made.push(out);
      await step(name);
      return out;
    };
    const embed = await table(w.embed, 'model.embed_tokens');
    const blocks: BlockWeights[] = [];
    for (let i = 0; i < c.numBlocks; i++) {
      const b = w.blocks[i];
      const q = {} as Record<LinearKey, QuantizedLinear>;
      for (const key of LINEAR_KEYS) {
        const dense = blockLinear(b, key) as DenseLinear;
        q[key] = new QuantizedLinear(quantizeWeight(floatValues(dense.w), dense.inFeatures, dense.outFeatures, spec), act, cache);
        made.push(q[key]);
        await step(linearName(i, key));
      }
      const inputNorm = tf.clone(b.inputNorm);
      const postNorm = tf.clone(b.postNorm);
      made.push(inputNorm, postNorm);
      blocks.push({ inputNorm, attn: { q: q.q, k: q.k, v: q.v, o: q.o }, postNorm, mlp: { gate: q.gate, up: q.up, down: q.down } });
    }
    const head = c.shareEmbedding ? embed : await table(w.head as TokenEmbedding, 'lm_head');
    const norm = tf.clone(w.norm);
    made.push(norm);
    return { model: new MobileLLM(c, { embed: embed as TokenEmbedding, blocks, norm, head }), spec };
  } catch (err) {
    for (const m of made) m.dispose();
    throw err;
  }
}

export interface WeightMemory {
  /** Integer codes, scales and zero points (JS typed arrays). */
  codeBytes: number;
  /** Float tensors the model holds: norms, a kept embedding, dense layers. */
  floatBytes: number;
  /** Dequantized float32 weights held by the cache. */
  cacheBytes: number;
  total: number;
}

/** Resident memory of a model's weights, counted from what it holds (shared blocks and a tied head once). */
export function weightMemory(model: MobileLLM): WeightMemory {
  const w = model.weights;
  let codes = 0;
  let floats = 0;
  let cached = 0;
  const seen = new Set<Linear>();
  const add = (l: Linear) => {
    if (seen.has(l)) return;
    seen.add(l);
    if (l instanceof QuantizedLinear) {
      codes += l.codeBytes;
      cached += l.cachedBytes;
    } else if (l instanceof DenseLinear) floats += l.w.size * 4;
    else if (l instanceof TokenEmbedding) floats += l.wT.size * 4;
  };
  add(w.embed);
  add(w.head);
  for (const b of w.blocks) for (const key of LINEAR_KEYS) add(blockLinear(b, key));
  floats += w.norm.size * 4 + w.blocks.reduce((n, b) => n + (b.inputNorm.size + b.postNorm.size) * 4, 0);
  return { codeBytes: codes, floatBytes: floats, cacheBytes: cached, total: codes + floats + cached };
}
