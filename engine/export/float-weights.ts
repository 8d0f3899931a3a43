// The float32 weights of any model folder engine/folder recognises, module by
// module in checkpoint layout ([out, in] for a linear, [vocab, hidden] for a
// table), for exporters that write other formats. Float and quantized folders
// are read tensor by tensor through engine/onnx/params (quantized codes
// dequantized); an adapter is merged into its base model first.
import type { ModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { transposed } from '../io/raw-tensor';
import { checkpointParams, modelParams, type WeightParam } from '../onnx/params';
import { dequantize } from '../quant/codes';
import { QuantizedLinear } from '../quant/quantized-linear';

export interface FloatWeights {
  /** The weight of `module` (a spec's module, e.g. model.layers.3.self_attn.q_proj) as float32 in checkpoint layout. */
  get(module: string): Float32Array;
  close(): void;
}

/** A parameter's values in checkpoint layout (params hold 2-D weights transposed). */
function checkpointValues(p: WeightParam): Float32Array {
  if (p instanceof QuantizedLinear) {
    const q = p.weight;
    return transposed(dequantize(q), q.inFeatures, q.outFeatures);
  }
  const values = p.values();
  return p.shape.length === 2 ? transposed(values, p.shape[0], p.shape[1]) : values.slice();
}

/** Opens the weights of `folder` as float32 (an adapter is merged on the current TensorFlow.js backend). */
export function openFloatWeights(folder: ModelFolder): FloatWeights {
  if (folder.kind !== 'adapter') {
    const params = checkpointParams(folder.dir, folder.quantization);
    return { get: (module) => checkpointValues(params.get(module)), close: () => params.close() };
  }
  const { model } = loadModelFolder(folder);
  const params = modelParams(model);
  return { get: (module) => checkpointValues(params.get(module)), close: () => model.dispose() };
}
