// The ONNX Runtime runtime: the model exported to one ONNX graph, run by
// onnxruntime-node on the CPU with every core.
import type { MobileLLMConfig } from '../model/config';
import { checkScorable, scoresFromLogits, type TokenScores } from './score';
import type { ExportedGraph } from '../onnx/mobilellm';
import { OnnxCache, OnnxModelSession, type OnnxSessionOptions } from '../onnx/session';
import type { InferenceRuntime, RuntimeCache } from './runtime';

export class OnnxRuntime implements InferenceRuntime {
  readonly name = 'onnx';

  private constructor(readonly session: OnnxModelSession) {}

  get config(): MobileLLMConfig {
    return this.session.config;
  }

  /** Opens a graph exported by engine/onnx (hold no other reference to it: its weights are dropped once the session holds them). */
  static async fromGraph(graph: ExportedGraph, opts: OnnxSessionOptions = {}): Promise<OnnxRuntime> {
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
