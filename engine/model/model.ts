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
import { LINEAR_KEYS, MOBILELLM_LAYOUT, tensorSpecs, type BlockNormKey, type Layout, type LinearKey, type TensorSpec } from './layout';
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
    /** The tensors it holds (engine/model/layout.ts). */
    readonly layout: Layout = MOBILELLM_LAYOUT,
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
        x = block(this.weights.blocks[b], x, shape, c.rmsNormEps, c.hiddenAct, ctx, trace?.onUpdates);
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

  /** Every unique tensor of this model, in checkpoint order. */
  specs(): TensorSpec[] {
    return tensorSpecs(this.config, this.layout);
  }

  /** Every unique parameter under its Hugging Face name (dense weights only). */
  namedParams(): Map<string, ParamRef> {
    return namedParams(this.weights, this.specs());
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

/** What a model holds for one tensor of its layout: a norm's gain, or the layer (table or linear) that owns the weight. */
export type Weight = tf.Tensor1D | Linear;

/** The weight `s` names in `w`. */
export function weightOf(w: ModelWeights, s: TensorSpec): Weight {
  switch (s.kind) {
    case 'embedding':
      return w.embed;
    case 'head':
      return w.head;
    case 'norm':
      return s.block === undefined ? w.norm : (w.blocks[s.block].norms as Record<string, tf.Tensor1D>)[s.key];
    case 'linear':
      return blockLinear(w.blocks[s.block!], s.key);
  }
}

/** The norm gain `s` names in `w`. */
export function normOf(w: ModelWeights, s: TensorSpec): tf.Tensor1D {
  return weightOf(w, s) as tf.Tensor1D;
}

/** The layer (embedding table, head or block linear) `s` names in `w`. */
export function layerOf(w: ModelWeights, s: TensorSpec): Linear {
  return weightOf(w, s) as Linear;
}

/**
 * Assembles a model's weights from one weight per tensor of the layout, in
 * checkpoint order: `make` returns a norm's gain (a tensor) for a norm spec,
 * and the layer for the embedding, the head and each block linear. A tied
 * head is the embedding. What was made is disposed if a later `make` throws.
 */
export function buildWeights(c: MobileLLMConfig, make: (s: TensorSpec) => Weight, layout: Layout = MOBILELLM_LAYOUT): ModelWeights {
  const made: Weight[] = [];
  try {
    const blocks = Array.from({ length: c.numBlocks }, () => ({ norms: {} as Record<string, tf.Tensor1D>, linears: {} as Record<LinearKey, Linear> }));
    let embed: Linear | undefined;
    let norm: tf.Tensor1D | undefined;
    let head: Linear | undefined;
    for (const s of tensorSpecs(c, layout)) {
      const x = make(s);
      made.push(x);
      const isTensor = x instanceof tf.Tensor;
      if (isTensor !== (s.kind === 'norm')) throw new Error(`${s.name}: expected ${s.kind === 'norm' ? 'a norm gain' : 'a layer'}`);
      if (s.kind === 'embedding') embed = x as Linear;
      else if (s.kind === 'head') head = x as Linear;
      else if (s.kind === 'norm' && s.block === undefined) norm = x as tf.Tensor1D;
      else if (s.kind === 'norm') blocks[s.block!].norms[s.key] = x as tf.Tensor1D;
      else if (s.kind === 'linear') blocks[s.block!].linears[s.key] = x as Linear;
    }
    return {
      // Quantized models hold a QuantizedEmbedding here: it looks tokens up like TokenEmbedding.
      embed: embed as TokenEmbedding,
      blocks: blocks.map(({ norms, linears: l }) => ({
        norms: norms as Record<BlockNormKey, tf.Tensor1D>,
        attn: { q: l.q, k: l.k, v: l.v, o: l.o },
        mlp: { gate: l.gate, up: l.up, down: l.down },
      })),
      norm: norm!,
      head: head ?? embed!,
    };
  } catch (err) {
    for (const x of made) x.dispose();
    throw err;
  }
}

/** Every tensor of a float model under its checkpoint name ([out, in] weights are held transposed). */
export function namedParams(w: ModelWeights, specs: TensorSpec[]): Map<string, ParamRef> {
  const out = new Map<string, ParamRef>();
  for (const s of specs) {
    const x = weightOf(w, s);
    // (a quantized embedding says for itself that it has no float weight)
    if (s.kind === 'embedding') out.set(s.name, { tensor: w.embed.wT, transposed: true });
    else if (x instanceof tf.Tensor) out.set(s.name, { tensor: x, transposed: false });
    else if (x instanceof DenseLinear) out.set(s.name, { tensor: x.w, transposed: true });
    else if (x instanceof TokenEmbedding) out.set(s.name, { tensor: x.wT, transposed: true });
    else throw new Error(`${s.module} is not a dense float layer`);
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
  layout: Layout = MOBILELLM_LAYOUT,
): ModelWeights {
  const transposed = (name: string) => {
    const t = get(name);
    const tt = tf.transpose(t);
    t.dispose();
    return wrap(tt, name) as tf.Tensor2D;
  };
  return buildWeights(
    c,
    (s) => {
      if (s.kind === 'norm') return wrap(get(s.name), s.name) as tf.Tensor1D;
      if (s.kind === 'linear') return new DenseLinear(transposed(s.name));
      return new TokenEmbedding(transposed(s.name));
    },
    layout,
  );
}

export function disposeWeights(w: ModelWeights): void {
  w.embed.dispose();
  if (w.head !== w.embed) w.head.dispose();
  w.norm.dispose();
  for (const b of w.blocks) {
    for (const n of Object.values(b.norms)) n.dispose();
    for (const key of LINEAR_KEYS) blockLinear(b, key).dispose();
  }
}
