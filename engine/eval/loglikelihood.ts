// The one place evaluation asks a model for log-likelihoods: the summed
// log p(continuation | context) of each request, through an inference
// runtime (ONNX Runtime or TensorFlow.js, engine/runtime). Each request is one
// forward pass over context + continuation (runtime.score), which reads every
// position at once: for short items that is several times faster than running
// the context once and the continuation token by token from its KV cache,
// where each token is a call of its own.
import { throwIfCancelled } from '../jobs/job';
import type { InferenceRuntime } from '../runtime/runtime';

export interface LoglikelihoodRequest {
  context: number[];
  continuation: number[];
}

/** log softmax(logits)[id], accumulated in float64. */
export function logProbAt(logits: Float32Array, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return logits[id] - max - Math.log(sum);
}

/**
 * The context as the model reads it: cut from the left so that context and
 * continuation (less its last token, which is only predicted) fit the
 * model's positions, as the harness truncates.
 */
export function fitContext(r: LoglikelihoodRequest, maxPositions: number): number[] {
  if (r.continuation.length > maxPositions)
    throw new Error(`a continuation of ${r.continuation.length} tokens exceeds the model's ${maxPositions}-token context`);
  const room = maxPositions - r.continuation.length + 1;
  return r.context.length > room ? r.context.slice(r.context.length - room) : r.context;
}

/** Summed log-likelihood of each request's continuation given its context, in request order. */
export async function loglikelihoods(runtime: InferenceRuntime, requests: LoglikelihoodRequest[], signal: AbortSignal): Promise<number[]> {
  const out: number[] = [];
  for (const r of requests) {
    throwIfCancelled(signal);
    const context = fitContext(r, runtime.config.maxPositions);
    // logprobs[i] scores ids[i + 1]: the continuation's tokens are scored from context.length − 1 on.
    const { logprobs } = await runtime.score([...context, ...r.continuation]);
    let sum = 0;
    for (let i = context.length - 1; i < logprobs.length; i++) sum += logprobs[i];
    out.push(sum);
  }
  return out;
}
