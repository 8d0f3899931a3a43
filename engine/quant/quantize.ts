// Quantizing a float MobileLLM in memory: every linear of every PHYSICAL block
// (a layer-shared block is one block, quantized once; the schedule is kept),
// and the embedding/head unless kept in float16. The result is a new
// MobileLLM; the float model is left as it was.
import * as tf from '@tensorflow/tfjs';
import { MobileLLM, buildWeights, layerOf, normOf, weightOf, type Weight } from '../model/model';
import { DenseLinear } from '../model/linear';
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

/** Refuses a model that is not all float (quantizing twice compounds the error). */
function assertFloat(model: MobileLLM): void {
  for (const s of model.specs()) {
    if (s.kind === 'norm') continue;
    const layer = layerOf(model.weights, s);
    if (layer instanceof QuantizedLinear) throw new Error(`the model is already quantized (${s.module}); quantize the original float model`);
    if (s.kind === 'linear' && !(layer instanceof DenseLinear)) throw new Error(`${s.module} is not a dense float layer (merge adapters before quantizing)`);
  }
}

function floatValues(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

/** Quantizes `model` (float) with `spec`. Reports progress per layer and honours the signal. */
export async function quantizeModel(model: MobileLLM, spec: QuantSpec, ctx: JobContext, opts: QuantizedModelOptions = {}): Promise<QuantizedModel> {
  const c = model.config;
  assertFloat(model);
  const cache = new DequantCache(opts.cacheBytes ?? defaultCacheBytes());
  const act = activationQuant(spec);
  const specs = model.specs();
  const total = specs.filter((s) => s.kind !== 'norm').length;
  let done = 0;
  const step = async (what: string) => {
    ctx.progress({ phase: `quantizing ${what}`, done: ++done, total, unit: 'layers' });
    await new Promise((r) => setImmediate(r)); // let a cancel request in
    throwIfCancelled(ctx.signal);
  };
  // One new weight per tensor of the layout: norms copied, tables and linears quantized.
  const made = new Map<string, Weight>();
  try {
    for (const s of specs) {
      if (s.kind === 'norm') {
        made.set(s.name, tf.clone(normOf(model.weights, s)));
        continue;
      }
      const layer = layerOf(model.weights, s);
      if (layer instanceof TokenEmbedding) {
        const [hidden, vocab] = layer.wT.shape;
        made.set(
          s.name,
          spec.keepEmbeddingFp
            ? new TokenEmbedding(tf.tensor2d(roundToF16(floatValues(layer.wT)), [hidden, vocab]))
            : new QuantizedEmbedding(quantizeWeight(floatValues(layer.wT), hidden, vocab, spec), act, cache),
        );
      } else {
        const dense = layer as DenseLinear;
        made.set(s.name, new QuantizedLinear(quantizeWeight(floatValues(dense.w), dense.inFeatures, dense.outFeatures, spec), act, cache));
      }
      await step(s.module);
    }
    return {
      model: new MobileLLM(
        c,
        buildWeights(c, (s) => made.get(s.name)!, model.layout),
        model.layout,
      ),
      spec,
    };
  } catch (err) {
    for (const m of made.values()) m.dispose();
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
  let codes = 0;
  let floats = 0;
  let cached = 0;
  for (const s of model.specs()) {
    const x = weightOf(model.weights, s);
    if (x instanceof QuantizedLinear) {
      codes += x.codeBytes;
      cached += x.cachedBytes;
    } else if (x instanceof DenseLinear) floats += x.w.size * 4;
    else if (x instanceof TokenEmbedding) floats += x.wT.size * 4;
    else if (x instanceof tf.Tensor) floats += x.size * 4;
  }
  return { codeBytes: codes, floatBytes: floats, cacheBytes: cached, total: codes + floats + cached };
}
