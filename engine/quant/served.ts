// Perplexity as the chat will see it: the float and the quantized model
// folders opened on the runtime that serves them (openRuntime's choice: ONNX
// Runtime when it loads, else TensorFlow.js; or the one forced), with the
// arithmetic the quantized layers run there, in words. On ONNX Runtime a
// weight-only model's MatMulNBits also quantizes activations to int8 (see
// engine/onnx/quantized.ts); there the quantized model is measured a second
// time with float32 arithmetic on its dequantized weights, so the report
// tells the weights' rounding from the kernel's activation quantization.
import { openRuntime } from '../folder/inference';
import { readModelFolder } from '../folder/kind';
import type { MobileLLMConfig } from '../model/config';
import { SERVED_NBITS_COMPUTE, describeNBitsArithmetic, int8BlockSize, nbitsAccuracyLevel } from '../onnx/quantized';
import type { InferenceRuntime, RuntimeName } from '../runtime/runtime';
import type { JobContext } from '../jobs/job';
import { perplexity, type Perplexity } from './evaluate';
import type { QuantSpec } from './spec';

export interface ServedPerplexity {
  before: Perplexity;
  after: Perplexity;
  /** Weight-only on ONNX Runtime: the quantized model with float32 arithmetic (MatMulNBits accuracy level 1). */
  dequantized?: Perplexity;
  /** The runtime that served them (both, or "float: …; quantized: …" where they differ). */
  runtime: string;
  /** How the quantized layers compute on it. */
  arithmetic: string;
}

/** How `spec`'s layers compute on `runtime` (ONNX Runtime's contrib operators, the ones it serves with). */
export function servedArithmetic(spec: QuantSpec, config: MobileLLMConfig, runtime: RuntimeName): string {
  if (spec.method === 'w8a8') {
    return runtime === 'onnx'
      ? 'MatMulInteger: activations quantized to uint8 per token (min-max), int8 weights, int32 sums'
      : 'activations quantized to 8 bits per token (min-max), simulated in float32 on the dequantized weights';
  }
  if (runtime === 'tfjs') return 'float32 on the dequantized weights';
  const bits = spec.method === 'w8' ? 8 : 4;
  return describeNBitsArithmetic(bits, bits === 8 ? int8BlockSize(config.hiddenSize) : spec.groupSize!, SERVED_NBITS_COMPUTE);
}

async function measured(dir: string, measure: (r: InferenceRuntime) => Promise<Perplexity>, opts: Parameters<typeof openRuntime>[1]) {
  const { runtime } = await openRuntime(readModelFolder(dir), opts);
  try {
    return { ppl: await measure(runtime), name: runtime.name, describe: runtime.describe() };
  } finally {
    await runtime.dispose();
  }
}

/**
 * Perplexity of `ids` (windows of `window`) on the float folder `sourceDir`
 * and the quantized folder `quantizedDir`, each opened as the chat opens it,
 * one at a time.
 */
export async function servedPerplexity(
  p: { sourceDir: string; quantizedDir: string; spec: QuantSpec; config: MobileLLMConfig; runtime?: RuntimeName },
  ids: number[],
  window: number,
  ctx: JobContext,
): Promise<ServedPerplexity> {
  const measure = (phase: string) => (r: InferenceRuntime) => perplexity(r, ids, window, ctx, phase);
  const before = await measured(p.sourceDir, measure('perplexity (float)'), { runtime: p.runtime });
  const after = await measured(p.quantizedDir, measure('perplexity (quantized)'), { runtime: p.runtime });
  const bits = p.spec.method === 'w8' ? 8 : 4;
  const kernelQuantizes = after.name === 'onnx' && p.spec.method !== 'w8a8' && nbitsAccuracyLevel(bits, SERVED_NBITS_COMPUTE) === 4;
  const dequantized = kernelQuantizes
    ? await measured(p.quantizedDir, measure('perplexity (dequantized)'), { runtime: 'onnx', onnx: { nbitsCompute: 'float32' } })
    : undefined;
  return {
    before: before.ppl,
    after: after.ppl,
    ...(dequantized ? { dequantized: dequantized.ppl } : {}),
    runtime: before.describe === after.describe ? after.describe : `float: ${before.describe}; quantized: ${after.describe}`,
    arithmetic: servedArithmetic(p.spec, p.config, after.name),
  };
}
