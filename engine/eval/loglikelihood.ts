// The one place evaluation asks a model for log-likelihoods: the summed
// log p(continuation | context) of each request, through an inference
// runtime (ONNX Runtime or TensorFlow.js, engine/runtime). Requests that share
// a context (the choices of one item) run it once: its KV cache is kept and
// rewound after each continuation, which is read token by token.
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
  const groups = new Map<string, { context: number[]; members: number[] }>();
  requests.forEach((r, i) => {
    const context = fitContext(r, runtime.config.maxPositions);
    const key = context.join(',');
    const g = groups.get(key) ?? { context, members: [] };
    g.members.push(i);
    groups.set(key, g);
  });
  const out = new Array<number>(requests.length);
  for (const { context, members } of groups.values()) {
    throwIfCancelled(signal);
    const cache = runtime.newCache();
    try {
      const afterContext = await runtime.nextLogits(context, cache);
      for (const i of members) {
        const cont = requests[i].continuation;
        let sum = logProbAt(afterContext, cont[0]);
        for (let j = 1; j < cont.length; j++) sum += logProbAt(await runtime.nextLogits([cont[j - 1]], cache), cont[j]);
        out[i] = sum;
        cache.truncate(context.length);
      }
    } finally {
      cache.dispose();
    }
  }
  return out;
}
