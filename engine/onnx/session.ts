// A MobileLLM graph in an ONNX Runtime InferenceSession on the CPU execution
// provider, batch 1, with its KV cache. The serialized weights are dropped as
// soon as the session holds them, so only ONNX Runtime's copy stays alive.
import os from 'node:os';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import type { MobileLLMConfig } from '../model/config';
import { WEIGHTS_FILE, type ExportOptions, type ExportedGraph, type GraphSignature } from './mobilellm';
import { loadOrt, type Ort } from './ort';

export interface OnnxSessionOptions extends ExportOptions {
  /** Intra-op threads (default: every core). */
  threads?: number;
  /** Profile with ONNX Runtime: endProfiling() writes `<profilePrefix>_<date>.json` (a Chrome trace). */
  profilePrefix?: string;
  /**
   * Let kernels prepack their constant weights (default true). A kernel packs
   * its own copy, so a layer-shared block is partly held once per layer that
   * runs it, and its second run reads other memory than its first (measured,
   * MobileLLM-125M, one session per process: immediate ×2 holds ~115 MB more
   * than unshared with prepacking, ~15 MB more without). false: one copy,
   * read by every layer that runs it.
   */
  prepack?: boolean;
}

/**
 * How long an idle intra-op thread spins for more work before it sleeps, µs.
 * ONNX Runtime's default spins far longer; on 2 cores a spinning thread takes
 * the core that the thread with the work needs whenever anything else runs
 * (another process, the JS thread, the UI). Measured (MobileLLM-125M, 2 AMD
 * EPYC cores, onnxruntime-node 1.30), decode tokens/s:
 *
 *                            default spin   20 µs     no spinning
 *   w4, idle machine          127–150      114–135      89–106
 *   w4, one core busy          47–70        79–98       81–87
 *   f32, idle machine          43–51        41–44       40–45
 *
 * 20 µs keeps ~95 % of the idle speed and none of the collapse under load.
 */
export const INTRA_OP_SPIN_US = 20;

/**
 * The CPU session options every session of ours uses (inference and
 * training): `threads` intra-op threads spinning at most INTRA_OP_SPIN_US,
 * one inter-op thread (the graphs run sequentially), every graph
 * optimization. One place, so that the measured choices hold for every session.
 */
export function cpuSessionOptions(threads: number): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    // Flattened by the Node binding into session config keys ("session.intra_op.spin_duration_us").
    extra: { session: { intra_op: { spin_duration_us: String(INTRA_OP_SPIN_US) } } },
  };
}

/** Cache growth step, in tokens. */
const CAPACITY_STEP = 256;

/**
 * The KV cache of one sequence, in JS buffers: per effective layer a key and
 * a value buffer [1, kvHeads, capacity, d] whose first `length` rows are
 * valid. The graph reads them and returns only each step's new rows, which
 * are copied in here; capacity grows in steps of 256 tokens.
 */
export class OnnxCache {
  /** Tokens in the cache (the position of the next token). */
  length = 0;
  private capacity = 0;
  private keys: Float32Array[];
  private values: Float32Array[];

  constructor(
    private readonly ort: Ort,
    private readonly sig: GraphSignature,
  ) {
    this.keys = this.empty();
    this.values = this.empty();
  }

  private empty(): Float32Array[] {
    return Array.from({ length: this.sig.numLayers }, () => new Float32Array(0));
  }

  /** Copies `rows` rows of every head from `src` (holding `srcRows` per head) to `dst` (`dstRows` per head) at row `at`. */
  private copyRows(src: Float32Array, srcRows: number, dst: Float32Array, dstRows: number, at: number, rows: number): void {
    const { kvHeads, headDim: d } = this.sig;
    for (let h = 0; h < kvHeads; h++) dst.set(src.subarray(h * srcRows * d, (h * srcRows + rows) * d), (h * dstRows + at) * d);
  }

  private grow(capacity: number): void {
    const { kvHeads, headDim } = this.sig;
    const move = (old: Float32Array) => {
      const buf = new Float32Array(kvHeads * capacity * headDim);
      this.copyRows(old, this.capacity, buf, capacity, 0, this.length);
      return buf;
    };
    this.keys = this.keys.map(move);
    this.values = this.values.map(move);
    this.capacity = capacity;
  }

  /** Inputs for a step of `T` tokens after what the cache holds (growing it when needed). */
  feeds(T: number): Record<string, Tensor> {
    const total = this.length + T;
    if (total > this.capacity) this.grow(Math.min(this.sig.maxPositions, Math.ceil(total / CAPACITY_STEP) * CAPACITY_STEP));
    const { kvHeads, headDim } = this.sig;
    const dims = [1, kvHeads, this.capacity, headDim];
    const out: Record<string, Tensor> = {
      seqlens_k: new this.ort.Tensor('int32', Int32Array.of(total - 1), [1]),
      total_sequence_length: new this.ort.Tensor('int32', Int32Array.of(total), []),
    };
    this.keys.forEach((k, l) => {
      out[`past.${l}.key`] = new this.ort.Tensor('float32', k, dims);
      out[`past.${l}.value`] = new this.ort.Tensor('float32', this.values[l], dims);
    });
    return out;
  }

  /** Appends a step's new rows (outputs new.{l}.key/value, [1, kvHeads, T, d]). */
  append(results: Record<string, Tensor>, T: number): void {
    this.keys.forEach((k, l) => {
      this.copyRows(results[`new.${l}.key`].data as Float32Array, T, k, this.capacity, this.length, T);
      this.copyRows(results[`new.${l}.value`].data as Float32Array, T, this.values[l], this.capacity, this.length, T);
    });
    this.length += T;
  }

  /** Drops everything after the first `length` tokens (a prompt that shares a prefix with the last one). */
  truncate(length: number): void {
    this.length = Math.min(this.length, length);
  }

  dispose(): void {
    this.keys = this.empty();
    this.values = this.empty();
    this.capacity = 0;
    this.length = 0;
  }
}

export class OnnxModelSession {
  private constructor(
    private readonly ort: Ort,
    private readonly session: import('onnxruntime-node').InferenceSession,
    readonly config: MobileLLMConfig,
    readonly signature: GraphSignature,
    readonly threads: number,
  ) {}

  /**
   * Opens an exported graph. Hold no other reference to `graph`: its weights
   * buffer (one allocation, a copy of every weight) is garbage when this returns.
   */
  static async open(graph: ExportedGraph, opts: OnnxSessionOptions = {}): Promise<OnnxModelSession> {
    const ort = await loadOrt();
    const threads = opts.threads ?? os.availableParallelism();
    const options = cpuSessionOptions(threads);
    if (opts.prepack === false) options.extra = { ...options.extra, session_state: { disable_prepacking: '1' } };
    const session = await ort.InferenceSession.create(graph.model, {
      ...options,
      externalData: [{ path: WEIGHTS_FILE, data: graph.weights }],
      ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    });
    return new OnnxModelSession(ort, session, graph.config, graph.signature, threads);
  }

  /** "onnxruntime-node 1.30.0" */
  get version(): string {
    return `onnxruntime-node ${this.ort.env.versions.node}`;
  }

  newCache(): OnnxCache {
    return new OnnxCache(this.ort, this.signature);
  }

  /**
   * Runs `ids` after what `cache` holds and appends them to it; returns the
   * logits of the last `numLogits` positions, [numLogits, V] row-major.
   */
  async forward(ids: number[], cache: OnnxCache, numLogits: number): Promise<Float32Array> {
    const T = ids.length;
    if (cache.length + T > this.signature.maxPositions) {
      throw new Error(`sequence of ${cache.length + T} tokens exceeds the model's ${this.signature.maxPositions}-token context`);
    }
    if (numLogits < 1 || numLogits > T) throw new Error(`numLogits must be in 1…${T}, got ${numLogits}`);
    const feeds = {
      input_ids: new this.ort.Tensor(
        'int64',
        BigInt64Array.from(ids, (i) => BigInt(i)),
        [1, T],
      ),
      num_logits: new this.ort.Tensor('int64', BigInt64Array.of(BigInt(numLogits)), [1]),
      ...cache.feeds(T),
    };
    const results = await this.session.run(feeds);
    cache.append(results as Record<string, Tensor>, T);
    return results.logits.data as Float32Array;
  }

  /** Stops profiling and writes the profile. */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
