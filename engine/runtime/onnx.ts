// The ONNX Runtime runtime: the model exported to one ONNX graph, run by
// onnxruntime-node on the CPU with every core.
import { initBackend } from '../backend/select';
import { loadModel, readConfigJson } from '../io/checkpoint';
import type { MobileLLMConfig } from '../model/config';
import type { MobileLLM } from '../model/model';
import { checkScorable, scoresFromLogits, type TokenScores } from '../eval/score';
import { exportGraph, exportMobileLLM, type ExportedGraph } from '../onnx/mobilellm';
import { checkpointParams } from '../onnx/params';
import { loadOrt } from '../onnx/ort';
import { OnnxCache, OnnxModelSession, type OnnxSessionOptions } from '../onnx/session';
import type { InferenceRuntime, RuntimeCache } from './runtime';

export class OnnxRuntime implements InferenceRuntime {
  readonly name = 'onnx';

  private constructor(readonly session: OnnxModelSession) {}

  get config(): MobileLLMConfig {
    return this.session.config;
  }

  /** Builds the session from `model`; the tfjs model is not needed (nor disposed) afterwards. */
  static async create(model: MobileLLM, opts: OnnxSessionOptions = {}): Promise<OnnxRuntime> {
    return new OnnxRuntime(await OnnxModelSession.create(model, opts));
  }

  /**
   * Loads a model folder (float or quantized) with as few copies of the
   * weights alive as it can. Float weights go from the file straight into the
   * serialized graph, tensor by tensor. Quantized ones are loaded (integer
   * codes) on TensorFlow.js's plain-JS cpu backend, whose memory goes back to
   * the allocator (the wasm backend's heap never shrinks), and disposed as
   * soon as the graph is serialized, before ONNX Runtime makes its copy.
   */
  static async open(dir: string, opts: OnnxSessionOptions = {}): Promise<OnnxRuntime> {
    await loadOrt(); // fail before loading anything if ONNX Runtime is missing
    let graph: ExportedGraph;
    if (readConfigJson(dir).quantization === undefined) {
      const params = checkpointParams(dir);
      try {
        graph = exportGraph(params, opts);
      } finally {
        params.close();
      }
    } else {
      const backend = await initBackend();
      await initBackend('cpu');
      try {
        const { model } = loadModel(dir);
        try {
          graph = exportMobileLLM(model, opts);
        } finally {
          model.dispose();
        }
      } finally {
        await initBackend(backend.name);
      }
    }
    return new OnnxRuntime(await OnnxModelSession.open(graph, opts));
  }

  describe(): string {
    const s = this.session;
    return `onnx (${s.version}, cpu, ${s.threads} thread${s.threads > 1 ? 's' : ''}, ${s.signature.ops} ops)`;
  }

  newCache(): OnnxCache {
    return this.session.newCache();
  }

  async nextLogits(input: number[], cache: RuntimeCache): Promise<Float32Array> {
    if (!(cache instanceof OnnxCache)) throw new Error('onnx runtime: the cache was made by another runtime');
    return this.session.forward(input, cache, 1);
  }

  async score(ids: number[]): Promise<TokenScores> {
    checkScorable(ids, this.config.maxPositions);
    const cache = this.session.newCache();
    const logits = await this.session.forward(ids, cache, ids.length); // [T, V]
    cache.dispose();
    return scoresFromLogits(ids, logits, this.config.vocabSize);
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}
