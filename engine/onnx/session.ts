// A MobileLLM graph in an ONNX Runtime InferenceSession on the CPU execution
// provider, batch 1, with its KV cache. The serialized graph is dropped as soon
// as the session holds the weights, so only ONNX Runtime's copy stays alive.
import os from 'node:os';
import type { Tensor } from 'onnxruntime-node';
import type { MobileLLM } from '../model/model';
import { exportMobileLLM, type GraphSignature, type OnnxOps } from './mobilellm';
import { loadOrt, type Ort } from './ort';
import type { NBitsCompute } from './quantized';

export interface OnnxSessionOptions {
  /** Operator set of the graph (default contrib: ONNX Runtime's fused operators). */
  ops?: OnnxOps;
  /** Arithmetic of weight-only quantized layers: int8 (default, fast) or float32 (exactly TensorFlow.js's). */
  nbitsCompute?: NBitsCompute;
  /** Intra-op threads (default: every core). */
  threads?: number;
  /** Profile with ONNX Runtime: endProfiling() writes `<profilePrefix>_<date>.json` (a Chrome trace). */
  profilePrefix?: string;
}

/** Cache growth step for the preallocated (shared past/present) layout, in tokens. */
const CAPACITY_STEP = 256;

/**
 * The KV cache of one sequence: per effective layer a key and a value tensor
 * [1, kvHeads, rows, d]. With a shared layout the tensors are preallocated
 * buffers (rows ≥ length, grown in steps) that the graph updates in place;
 * otherwise each step's present tensors (rows = length) become the next
 * step's past.
 */
export class OnnxCache {
  /** Tokens in the cache (the position of the next token). */
  length = 0;
  private keys: Tensor[];
  private values: Tensor[];

  constructor(
    private readonly ort: Ort,
    private readonly sig: GraphSignature,
  ) {
    this.keys = this.empty(0);
    this.values = this.empty(0);
  }

  private empty(rows: number): Tensor[] {
    const { kvHeads, headDim } = this.sig;
    return Array.from({ length: this.sig.numLayers }, () => new this.ort.Tensor('float32', new Float32Array(kvHeads * rows * headDim), [1, kvHeads, rows, headDim]));
  }

  /** Rows allocated per layer (the cache's length in the concat layout). */
  get rows(): number {
    return this.keys[0].dims[2];
  }

  /** Copies the first `keep` rows of every head of every layer into tensors of `rows` rows. */
  private resize(rows: number, keep: number): void {
    const { kvHeads, headDim } = this.sig;
    const copy = (t: Tensor): Tensor => {
      const src = t.data as Float32Array;
      const dst = new Float32Array(kvHeads * rows * headDim);
      const old = t.dims[2];
      for (let h = 0; h < kvHeads; h++) dst.set(src.subarray(h * old * headDim, (h * old + keep) * headDim), h * rows * headDim);
      return new this.ort.Tensor('float32', dst, [1, kvHeads, rows, headDim]);
    };
    this.keys = this.keys.map(copy);
    this.values = this.values.map(copy);
  }

  /** Feeds for the cache before a step of `T` tokens (grows a shared buffer when needed). */
  feeds(T: number): Record<string, Tensor> {
    const total = this.length + T;
    if (this.sig.sharedKv && total > this.rows) {
      const rows = Math.min(this.sig.maxPositions, Math.max(2 * this.rows, Math.ceil(total / CAPACITY_STEP) * CAPACITY_STEP));
      this.resize(rows, this.length);
    }
    const out: Record<string, Tensor> = {};
    this.keys.forEach((k, l) => {
      out[`past.${l}.key`] = k;
      out[`past.${l}.value`] = this.values[l];
    });
    if (this.sig.sharedKv) {
      out.seqlens_k = new this.ort.Tensor('int32', Int32Array.of(total - 1), [1]);
      out.total_sequence_length = new this.ort.Tensor('int32', Int32Array.of(total), []);
    }
    return out;
  }

  /** Where the graph writes the present tensors: into the shared buffers, or anywhere (null). */
  fetches(): Record<string, Tensor | null> {
    const out: Record<string, Tensor | null> = { logits: null };
    this.keys.forEach((k, l) => {
      out[`present.${l}.key`] = this.sig.sharedKv ? k : null;
      out[`present.${l}.value`] = this.sig.sharedKv ? this.values[l] : null;
    });
    return out;
  }

  /** Records a step's results. */
  advance(results: Record<string, Tensor>, T: number): void {
    if (!this.sig.sharedKv) {
      this.keys = this.keys.map((_, l) => results[`present.${l}.key`]);
      this.values = this.values.map((_, l) => results[`present.${l}.value`]);
    }
    this.length += T;
  }

  /** Drops everything after the first `length` tokens (a prompt that shares a prefix with the last one). */
  truncate(length: number): void {
    if (length >= this.length) return;
    if (!this.sig.sharedKv) this.resize(length, length);
    this.length = length;
  }

  dispose(): void {
    this.keys = this.empty(0);
    this.values = this.empty(0);
    this.length = 0;
  }
}

export class OnnxModelSession {
  private constructor(
    private readonly ort: Ort,
    private readonly session: import('onnxruntime-node').InferenceSession,
    readonly signature: GraphSignature,
    readonly threads: number,
  ) {}

  /** Exports `model` and opens it in ONNX Runtime. The tfjs model can be disposed once this resolves. */
  static async create(model: MobileLLM, opts: OnnxSessionOptions = {}): Promise<OnnxModelSession> {
    const ort = await loadOrt();
    const threads = opts.threads ?? os.availableParallelism();
    let exported: ReturnType<typeof exportMobileLLM> | null = exportMobileLLM(model, { ops: opts.ops ?? 'contrib', nbitsCompute: opts.nbitsCompute });
    const signature = exported.signature;
    const session = await ort.InferenceSession.create(exported.bytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    });
    exported = null; // ONNX Runtime holds the weights now; let the serialized copy go
    return new OnnxModelSession(ort, session, signature, threads);
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
      input_ids: new this.ort.Tensor('int64', BigInt64Array.from(ids, (i) => BigInt(i)), [1, T]),
      num_logits: new this.ort.Tensor('int64', BigInt64Array.of(BigInt(numLogits)), [1]),
      ...cache.feeds(T),
    };
    const results = await this.session.run(feeds, cache.fetches());
    cache.advance(results as Record<string, Tensor>, T);
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
