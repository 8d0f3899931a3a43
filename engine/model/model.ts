// MobileLLM: embedding → effective layers (physical blocks in sharing order)
// → final RMSNorm → output head (the embedding itself when share_embedding).
// The one model implementation behind chat, scoring, training, quantization
// and inspection.
import * as tf from '@tensorflow/tfjs';
import { layerSchedule, type MobileLLMConfig } from './config';
import { block, type BlockUpdates, type BlockWeights } from './block';
import { DenseLinear, type Linear } from './linear';
import { TokenEmbedding } from './embedding';
import { rmsNorm } from './rmsnorm';
import { LINEAR_KEYS, LINEAR_NAMES, type LinearKey } from './layout';
import { Rope } from './rope';
import { KVCache } from './kv-cache';

export interface ModelWeights {
  embed: TokenEmbedding;
  blocks: BlockWeights[];
  norm: tf.Tensor1D;
  /** The output head; `embed` itself when the embedding is shared. */
  head: Linear;
}

/** Optional taps on the forward pass (tensors handed out are kept; the receiver disposes them). */
export interface ForwardTrace {
  /** hidden[0] = embedding output, hidden[k] = output of effective layer k−1, last = after the final norm. */
  hidden?: tf.Tensor2D[];
  onProbs?: (layer: number, probs: tf.Tensor4D) => void;
  onUpdates?: (layer: number, u: BlockUpdates) => void;
}

export interface ForwardOptions {
  /** Continue from (and append to) this cache; positions start at cache.length. */
  cache?: KVCache;
  /** Only the logits of the last position of each sequence: [B, 1, V]. */
  lastOnly?: boolean;
  trace?: ForwardTrace;
}

export class MobileLLM {
  /** Effective layer → physical block. */
  readonly schedule: number[];
  readonly rope: Rope;

  constructor(
    readonly config: MobileLLMConfig,
    readonly weights: ModelWeights,
  ) {
    this.schedule = layerSchedule(config);
    if (weights.blocks.length !== config.numBlocks) {
      throw new Error(`model has ${weights.blocks.length} blocks, config says ${config.numBlocks}`);
    }
    this.rope = new Rope(config.headDim, config.ropeTheta);
  }

  get numLayers(): number {
    return this.schedule.length;
  }

  newCache(): KVCache {
    return new KVCache(this.numLayers);
  }

  /** ids [B, T] (int32) → logits [B, T, V] (or [B, 1, V] with lastOnly). */
  forward(ids: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    const c = this.config;
    const [B, T] = ids.shape;
    const offset = opts.cache?.length ?? 0;
    if (offset + T > c.maxPositions) {
      throw new Error(`sequence of ${offset + T} tokens exceeds the model's ${c.maxPositions}-token context`);
    }
    const logits = tf.tidy(() => {
      const { cos, sin } = this.rope.table(offset, T);
      const shape = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
      let x = this.weights.embed.lookup(ids.reshape([B * T]) as tf.Tensor1D); // [B·T, H]
      const trace = opts.trace;
      if (trace?.hidden) trace.hidden.push(tf.keep(x));
      this.schedule.forEach((b, layer) => {
        const ctx = { B, T, rope: this.rope, cos, sin, cache: opts.cache, layer, onProbs: trace?.onProbs };
        x = block(this.weights.blocks[b], x, shape, c.rmsNormEps, ctx, trace?.onUpdates);
        if (trace?.hidden && layer < this.schedule.length - 1) trace.hidden.push(tf.keep(x));
      });
      x = rmsNorm(x, this.weights.norm, c.rmsNormEps);
      if (trace?.hidden) trace.hidden.push(tf.keep(x));
      if (opts.lastOnly && T > 1) {
        x = tf.gather(x, tf.range(T - 1, B * T, T, 'int32')) as tf.Tensor2D; // last position of each row
        return this.weights.head.apply(x).reshape([B, 1, c.vocabSize]) as tf.Tensor3D;
      }
      return this.weights.head.apply(x).reshape([B, T, c.vocabSize]) as tf.Tensor3D;
    });
    if (opts.cache) opts.cache.length = offset + T;
    return logits;
  }

  /** Every unique parameter under its Hugging Face name (dense weights only). */
  namedParams(): Map<string, ParamRef> {
    return namedParams(this.weights, this.config);
  }

  dispose(): void {
    disposeWeights(this.weights);
    this.rope.dispose();
  }
}

/** A parameter and how it relates to the checkpoint layout. */
export interface ParamRef {
  tensor: tf.Tensor;
  /** Held as the transpose of the checkpoint tensor ([in, out] for a [out, in] weight). */
  transposed: boolean;
}

export function blockLinear(b: BlockWeights, key: LinearKey): Linear {
  return key === 'q' || key === 'k' || key === 'v' || key === 'o' ? b.attn[key] : b.mlp[key];
}

export function namedParams(w: ModelWeights, c: MobileLLMConfig): Map<string, ParamRef> {
  const out = new Map<string, ParamRef>();
  out.set('model.embed_tokens.weight', { tensor: w.embed.wT, transposed: true });
  w.blocks.forEach((b, i) => {
    const p = `model.layers.${i}`;
    out.set(`${p}.input_layernorm.weight`, { tensor: b.inputNorm, transposed: false });
    out.set(`${p}.post_attention_layernorm.weight`, { tensor: b.postNorm, transposed: false });
    for (const key of LINEAR_KEYS) {
      const lin = blockLinear(b, key);
      if (!(lin instanceof DenseLinear)) throw new Error(`${p}.${LINEAR_NAMES[key]} is not a dense float layer`);
      out.set(`${p}.${LINEAR_NAMES[key]}.weight`, { tensor: lin.w, transposed: true });
    }
  });
  out.set('model.norm.weight', { tensor: w.norm, transposed: false });
  if (!c.shareEmbedding) {
    if (!(w.head instanceof TokenEmbedding)) throw new Error('lm_head is not a dense float layer');
    out.set('lm_head.weight', { tensor: w.head.wT, transposed: true });
  }
  return out;
}

/**
 * Builds the weights from checkpoint-layout tensors (HF names, [out, in]).
 * `wrap` turns each stored tensor into what the model holds (e.g. tf.variable
 * for training); it receives the tensor already in the model's layout.
 */
export function weightsFromCheckpoint(
  c: MobileLLMConfig,
  get: (name: string) => tf.Tensor,
  wrap: (t: tf.Tensor, name: string) => tf.Tensor = (t) => t,
): ModelWeights {
  const transposed = (name: string) => {
    const t = get(name);
    const tt = tf.transpose(t);
    t.dispose();
    return wrap(tt, name) as tf.Tensor2D;
  };
  const plain = (name: string) => wrap(get(name), name) as tf.Tensor1D;
  const embed = new TokenEmbedding(transposed('model.embed_tokens.weight'));
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < c.numBlocks; i++) {
    const p = `model.layers.${i}`;
    const lin = (key: LinearKey) => new DenseLinear(transposed(`${p}.${LINEAR_NAMES[key]}.weight`));
    blocks.push({
      inputNorm: plain(`${p}.input_layernorm.weight`),
      attn: { q: lin('q'), k: lin('k'), v: lin('v'), o: lin('o') },
      postNorm: plain(`${p}.post_attention_layernorm.weight`),
      mlp: { gate: lin('gate'), up: lin('up'), down: lin('down') },
    });
  }
  const norm = plain('model.norm.weight');
  const head = c.shareEmbedding ? embed : new TokenEmbedding(transposed('lm_head.weight'));
  return { embed, blocks, norm, head };
}

export function disposeWeights(w: ModelWeights): void {
  w.embed.dispose();
  if (w.head !== w.embed) w.head.dispose();
  w.norm.dispose();
  for (const b of w.blocks) {
    b.inputNorm.dispose();
    b.postNorm.dispose();
    for (const key of LINEAR_KEYS) blockLinear(b, key).dispose();
  }
}
