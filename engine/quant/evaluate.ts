// What quantization cost, measured: perplexity on a text, and per layer the
// weight error and the output error on calibration tokens.
//
//   MSE  = mean((y − ŷ)²)          SQNR = 10·log10(Σ y² / Σ (y − ŷ)²) dB
//
// For outputs, two views of each linear layer (summed over all its uses when
// its block is shared):
//   local  the quantized layer on the FLOAT model's input to it: the error
//          this layer adds by itself (for W8A8 including its activation
//          quantization);
//   model  the quantized model's output at this layer against the float
//          model's: the error accumulated up to here.
import * as tf from '@tensorflow/tfjs';
import { MobileLLM, layerOf, type ModelWeights } from '../model/model';
import { DenseLinear, type Linear } from '../model/linear';
import { TokenEmbedding } from '../model/embedding';
import { scoreIds } from '../runtime/score';
import type { InferenceRuntime } from '../runtime/runtime';
import { throwIfCancelled, type JobContext } from '../jobs/job';
import { dequantize } from './codes';
import { QuantizedLinear } from './quantized-linear';

export interface ErrorStats {
  mse: number;
  /** null when the error is exactly zero (infinite SQNR). */
  sqnrDb: number | null;
}

/** Accumulates Σ y², Σ (y − ŷ)² and the element count. */
class ErrorSum {
  signal = 0;
  noise = 0;
  count = 0;

  addArrays(y: ArrayLike<number>, yHat: ArrayLike<number>): void {
    for (let i = 0; i < y.length; i++) {
      this.signal += y[i] * y[i];
      this.noise += (y[i] - yHat[i]) ** 2;
    }
    this.count += y.length;
  }

  addTensors(y: tf.Tensor, yHat: tf.Tensor): void {
    const [signal, noise] = tf.tidy(() => [tf.sum(tf.square(y)), tf.sum(tf.square(tf.sub(y, yHat)))]);
    this.signal += signal.dataSync()[0];
    this.noise += noise.dataSync()[0];
    this.count += y.size;
    tf.dispose([signal, noise]);
  }

  stats(): ErrorStats {
    return { mse: this.count ? this.noise / this.count : 0, sqnrDb: this.noise > 0 ? 10 * Math.log10(this.signal / this.noise) : null };
  }
}

/** A quantized layer and the float layer it came from. */
export interface LayerPair {
  /** Checkpoint name without suffix, e.g. model.layers.0.self_attn.q_proj, model.embed_tokens. */
  name: string;
  /** Physical block, or null for the embedding/head. */
  block: number | null;
  /** Effective layers that run it (two or more for a shared block; empty for the embedding/head). */
  layers: number[];
  float: Linear;
  quantized: QuantizedLinear;
}

/** Every quantized layer of `q` with its float original in `f`: the embedding and head first, then unique blocks once. */
export function layerPairs(f: MobileLLM, q: MobileLLM): LayerPair[] {
  const tables: LayerPair[] = [];
  const blocks: LayerPair[] = [];
  for (const s of q.specs()) {
    const quantized = s.kind === 'norm' ? null : layerOf(q.weights, s);
    if (!(quantized instanceof QuantizedLinear)) continue; // a norm, or a table kept in float
    if (s.block === undefined) tables.push({ name: s.module, block: null, layers: [], float: layerOf(f.weights, s), quantized });
    else blocks.push({ name: s.module, block: s.block, layers: s.layers, float: layerOf(f.weights, s), quantized });
  }
  return [...tables, ...blocks];
}

function floatWeight(l: Linear): tf.Tensor2D {
  if (l instanceof DenseLinear) return l.w;
  if (l instanceof TokenEmbedding) return l.wT;
  throw new Error('expected a float layer');
}

/** Weight error of each quantized layer: ŵ against w, element by element. */
export function weightErrors(pairs: LayerPair[]): Map<string, ErrorStats> {
  const out = new Map<string, ErrorStats>();
  for (const p of pairs) {
    const sum = new ErrorSum();
    sum.addArrays(floatWeight(p.float).dataSync(), dequantize(p.quantized.weight));
    out.set(p.name, sum.stats());
  }
  return out;
}

/** Runs `model` with some layers replaced (sharing every tensor): `swap` returns the layer to use. */
function forwardWith(model: MobileLLM, ids: tf.Tensor2D, swap: (l: Linear) => Linear): void {
  const w = model.weights;
  const weights: ModelWeights = {
    embed: w.embed,
    norm: w.norm,
    head: swap(w.head),
    blocks: w.blocks.map((b) => ({
      norms: b.norms,
      attn: { q: swap(b.attn.q), k: swap(b.attn.k), v: swap(b.attn.v), o: swap(b.attn.o) },
      mlp: { gate: swap(b.mlp.gate), up: swap(b.mlp.up), down: swap(b.mlp.down) },
    })),
  };
  const probed = new MobileLLM(model.config, weights, model.layout);
  try {
    probed.forward(ids).dispose();
  } finally {
    probed.rope.dispose(); // the only tensor it owns
  }
}

/** A Linear that calls `tap(x, y)` after each use of `inner` (and owns nothing). */
function tapped(inner: Linear, tap: (x: tf.Tensor2D, y: tf.Tensor2D) => void): Linear {
  return {
    inFeatures: inner.inFeatures,
    outFeatures: inner.outFeatures,
    apply(x) {
      const y = inner.apply(x);
      tap(x, y);
      return y;
    },
    dispose() {},
  };
}

export interface OutputErrors {
  local: ErrorStats;
  model: ErrorStats;
}

/**
 * Output errors of each pair used as a linear layer on `ids` (one sequence):
 * two forward passes, float then quantized. An untied embedding (a lookup
 * only) has no entry.
 */
export function outputErrors(f: MobileLLM, q: MobileLLM, pairs: LayerPair[], ids: number[]): Map<string, OutputErrors> {
  const input = tf.tensor2d([ids], [1, ids.length], 'int32');
  const local = new Map(pairs.map((p) => [p.name, new ErrorSum()]));
  const model = new Map(pairs.map((p) => [p.name, new ErrorSum()]));
  const floatOutputs = new Map(pairs.map((p) => [p.name, [] as tf.Tensor2D[]]));
  const byFloat = new Map<Linear, LayerPair>(pairs.map((p) => [p.float, p]));
  const byQuant = new Map<Linear, LayerPair>(pairs.map((p) => [p.quantized, p]));
  try {
    forwardWith(f, input, (l) => {
      const p = byFloat.get(l);
      if (!p) return l;
      return tapped(l, (x, y) => {
        floatOutputs.get(p.name)!.push(tf.keep(y));
        const yLocal = p.quantized.apply(x);
        local.get(p.name)!.addTensors(y, yLocal);
        yLocal.dispose();
      });
    });
    forwardWith(q, input, (l) => {
      const p = byQuant.get(l);
      if (!p) return l;
      let use = 0;
      return tapped(l, (_x, y) => model.get(p.name)!.addTensors(floatOutputs.get(p.name)![use++], y));
    });
  } finally {
    input.dispose();
    for (const ys of floatOutputs.values()) tf.dispose(ys);
  }
  const used = pairs.filter((p) => local.get(p.name)!.count > 0);
  return new Map(used.map((p) => [p.name, { local: local.get(p.name)!.stats(), model: model.get(p.name)!.stats() }]));
}

export interface Perplexity {
  /** exp(mean NLL) over the predicted tokens. */
  ppl: number;
  nll: number;
  /** Tokens predicted (each window's first token has no prediction). */
  predicted: number;
  /** Tokens per window: the text is cut into consecutive windows scored independently. */
  window: number;
}

/**
 * Perplexity of `ids` in consecutive windows of `window` tokens (a last
 * window under 2 tokens is dropped), on a model in memory (TensorFlow.js) or
 * on an inference runtime.
 */
export async function perplexity(model: MobileLLM | InferenceRuntime, ids: number[], window: number, ctx: JobContext, phase: string): Promise<Perplexity> {
  const score = model instanceof MobileLLM ? async (chunk: number[]) => scoreIds(model, chunk) : (chunk: number[]) => model.score(chunk);
  let nll = 0;
  let predicted = 0;
  const windows = Math.ceil(ids.length / window);
  for (let w = 0; w < windows; w++) {
    const chunk = ids.slice(w * window, (w + 1) * window);
    if (chunk.length >= 2) {
      const s = await score(chunk);
      nll += s.nll;
      predicted += s.logprobs.length;
    }
    ctx.progress({ phase, done: w + 1, total: windows, unit: 'windows' });
    await new Promise((r) => setImmediate(r));
    throwIfCancelled(ctx.signal);
  }
  if (predicted === 0) throw new Error(`the evaluation text has ${ids.length} token(s); perplexity needs at least 2`);
  return { ppl: Math.exp(nll / predicted), nll, predicted, window };
}
