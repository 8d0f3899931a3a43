// An inference runtime runs a loaded MobileLLM forward for generation and
// scoring. Two exist: ONNX Runtime (native CPU kernels, integer kernels for
// quantized weights; the fast one) and TensorFlow.js (always available, the one
// that trains). Generation, scoring, evaluation and chat are written against
// this interface, so they run on either.
import type { MobileLLMConfig } from '../model/config';
import type { TokenScores } from './score';

export const RUNTIME_NAMES = ['onnx', 'tfjs'] as const;
export type RuntimeName = (typeof RUNTIME_NAMES)[number];

/** How people name each runtime; every progress message of a training job begins with it ("ONNX Runtime · …"). */
export const RUNTIME_LABELS: Record<RuntimeName, string> = { onnx: 'ONNX Runtime', tfjs: 'TensorFlow.js' };

/** The key/value cache of one sequence, held by the runtime that made it. */
export interface RuntimeCache {
  /** Tokens in the cache (the position of the next token). */
  readonly length: number;
  /** Drops everything after the first `length` tokens (a prompt that shares a prefix with the last one). */
  truncate(length: number): void;
  dispose(): void;
}

export interface InferenceRuntime {
  readonly name: RuntimeName;
  readonly config: MobileLLMConfig;
  /** One line for people, e.g. "onnx (onnxruntime-node 1.30.0, cpu, 2 threads, contrib ops)". */
  describe(): string;
  /** An empty cache for one sequence (batch 1). */
  newCache(): RuntimeCache;
  /**
   * Runs `input` after what `cache` holds and appends it to the cache; returns
   * the logits of the last position [V] (a fresh array: the caller may edit it).
   */
  nextLogits(input: number[], cache: RuntimeCache): Promise<Float32Array>;
  /** Log-probability of each token given the ones before it (one forward pass, no cache). */
  score(ids: number[]): Promise<TokenScores>;
  /** Frees the runtime and the model it holds. */
  dispose(): Promise<void>;
}
