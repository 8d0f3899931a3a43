// The parameters the exporter reads, by Hugging Face module name, from one of
// two places: a MobileLLM in memory (float or quantized), or a float or
// quantized checkpoint folder read tensor by tensor while the graph is
// serialized — so that exporting from disk builds no model first.
import * as tf from '@tensorflow/tfjs';
import { layerSchedule, type MobileLLMConfig } from '../model/config';
import { DenseLinear, type Linear } from '../model/linear';
import { TokenEmbedding } from '../model/embedding';
import { weightOf, type MobileLLM } from '../model/model';
import { tensorSpecs, type Layout, type TensorSpec } from '../model/layout';
import { checkTensorNames, openWeights, readConfig } from '../io/checkpoint';
import { finiteFloat32, transposed } from '../io/raw-tensor';
import { DequantCache, QuantizedLinear } from '../quant/quantized-linear';
import { checkQuantizedTensors, readWeight } from '../quant/checkpoint';
import { activationQuant } from '../quant/quantize';
import type { QuantSpec } from '../quant/spec';
import type { TensorSource } from '../io/tensor-source';

/**
 * A float parameter: its shape as the model holds it (2-D ones transposed to
 * [in, out], tables to [hidden, vocab]) and its float32 values, read on demand.
 */
export interface FloatParam {
  readonly shape: number[];
  values(): Float32Array;
}

/** A linear layer or table: float values, or engine/quant's integer codes. */
export type WeightParam = FloatParam | QuantizedLinear;

export interface ModelParams {
  config: MobileLLMConfig;
  /** Every tensor, in checkpoint order (engine/model/layout.ts). */
  specs: TensorSpec[];
  /** Effective layer → physical block. */
  schedule: number[];
  /**
   * The parameter of a module (a spec's `module`): "model.embed_tokens", "lm_head",
   * "model.layers.3.self_attn.q_proj", "model.layers.3.input_layernorm", "model.norm".
   */
  get(module: string): WeightParam;
}

function tensorParam(t: tf.Tensor): FloatParam {
  return { shape: t.shape, values: () => t.dataSync() as Float32Array };
}

function linearParam(l: Linear, module: string): WeightParam {
  if (l instanceof QuantizedLinear) return l;
  if (l instanceof DenseLinear) return tensorParam(l.w);
  if (l instanceof TokenEmbedding) return tensorParam(l.wT);
  throw new Error(`${module}: ${l.constructor.name} layers cannot be exported to ONNX`);
}

/** The parameters of a model in memory. */
export function modelParams(model: MobileLLM): ModelParams {
  const specs = model.specs();
  const byModule = new Map<string, WeightParam>();
  for (const s of specs) {
    const x = weightOf(model.weights, s);
    byModule.set(s.module, x instanceof tf.Tensor ? tensorParam(x) : linearParam(x, s.module));
  }
  return { config: model.config, specs, schedule: model.schedule, get: (module) => byModule.get(module)! };
}

/** A float tensor of a checkpoint, read from the file when the exporter asks ([out, in] → held [in, out]). */
function fileParam(source: TensorSource, name: string): FloatParam {
  const { shape } = source.info(name);
  const read = () => finiteFloat32(source.read(name), source.path, name);
  if (shape.length === 1) return { shape, values: read };
  const [rows, cols] = shape;
  return { shape: [cols, rows], values: () => transposed(read(), rows, cols) };
}

/**
 * The parameters of a float or quantized checkpoint folder (any format and
 * dtype loadModel reads), read from the file while the graph is serialized —
 * float tensors when the exporter asks for them, a quantized matrix's codes
 * when its layer is built — so that no model is built first. `quantization`:
 * the folder's spec (engine/folder), null for a float folder. Call close()
 * when the export is done.
 */
export function checkpointParams(dir: string, quantization: QuantSpec | null = null, layout?: Layout): ModelParams & { close(): void } {
  const config = readConfig(dir);
  const { source } = openWeights(dir);
  try {
    if (quantization) checkQuantizedTensors(source, config, quantization, layout);
    else checkTensorNames(source, config, layout);
  } catch (err) {
    source.close();
    throw err;
  }
  const specs = tensorSpecs(config, layout);
  const byModule = new Map(specs.map((s) => [s.module, s]));
  const act = quantization ? activationQuant(quantization) : 'none';
  const noCache = new DequantCache(0);
  const get = (module: string): WeightParam => {
    const s = byModule.get(module)!;
    const isCodes = quantization && (s.kind === 'linear' || ((s.kind === 'embedding' || s.kind === 'head') && !quantization.keepEmbeddingFp));
    return isCodes ? new QuantizedLinear(readWeight(source, module, quantization), act, noCache) : fileParam(source, s.name);
  };
  return { config, specs, schedule: layerSchedule(config), get, close: () => source.close() };
}
