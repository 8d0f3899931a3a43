// What a model's blocks and layers look like (schema.ts: Analysis).
//
// Weights: the cosine similarity of each projection between every pair of
// physical blocks (blocks alike enough to share one copy), and per tensor its
// shape, norm, moments and histogram.
//
// Activations, one forward pass over a probe sequence of T tokens, with the
// model's trace hooks. Effective layer k maps its input h_k [T, H] to
//   h_{k+1} = (h_k + a_k) + m_k          a: attention update, m: MLP update
// and we record the scale of h_{k+1}, how far the layer turns each token's
// vector (cos(h_k, h_{k+1})), the sizes of a_k and m_k, whether consecutive
// layers push the same way (cos(Δ_k, Δ_{k−1}), Δ = a + m), the attention
// entropy of each head, and the similarity of every pair of hidden states.
import * as tf from '@tensorflow/tfjs';
import { type MobileLLM } from '../model/model';
import { LINEAR_KEYS, blockPrefix, linearModule, type LinearKey } from '../model/layout';
import type { BlockUpdates } from '../model/block';
import { usesPerBlock } from '../model/sharing';
import { HISTOGRAM_BINS, sig4, type ActivationAnalysis, type TensorStats, type WeightAnalysis } from './schema';

/** The probe when none is given and the model folder has a tokenizer. */
export const BUILTIN_PROBE =
  'The river runs past the old mill before it turns toward the sea. In the morning the water is quiet, ' +
  'and the birds sit on the stones near the bank. A boy walks down the path with a basket of bread for his ' +
  'grandmother, who lives in the last house before the bridge. She asks him what he saw on the way, and he ' +
  'tells her about the heron, the fox at the edge of the field, and the man who was mending a boat.';

/** Longer probes are cut to this many tokens (attention memory grows with T²). */
export const MAX_PROBE_TOKENS = 256;

// ---------------------------------------------------------------- weights

/** Columns of the flattened weights handled per matMul when building a Gram matrix (bounds memory). */
const GRAM_CHUNK = 1 << 16;

/**
 * G[i][j] = ⟨w_i, w_j⟩ for N tensors of one shape: X [N, P] (one flattened
 * tensor per row) times Xᵀ, accumulated in float64 over column chunks of X.
 */
function gram(ws: tf.Tensor[]): number[][] {
  const N = ws.length;
  const P = ws[0].size;
  const G = Array.from({ length: N }, () => new Array<number>(N).fill(0));
  for (let start = 0; start < P; start += GRAM_CHUNK) {
    const size = Math.min(GRAM_CHUNK, P - start);
    const chunk = tf.tidy(() => {
      const X = tf.concat(
        ws.map((w) => tf.slice(tf.reshape(w, [1, P]), [0, start], [1, size])),
        0,
      ); // [N, size]
      return tf.matMul(X, X, false, true); // [N, N]
    });
    const g = chunk.dataSync();
    chunk.dispose();
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) G[i][j] += g[i * N + j];
  }
  return G;
}

/** cos[i][j] = G[i][j] / √(G[i][i]·G[j][j]) (0 against a zero tensor). */
function cosines(G: number[][]): number[][] {
  return G.map((row, i) => row.map((g, j) => sig4(G[i][i] && G[j][j] ? g / Math.sqrt(G[i][i] * G[j][j]) : 0)));
}

/** Shape, norm, mean, std, range and a HISTOGRAM_BINS-bin histogram (two passes, float64). */
export function tensorStats(name: string, shape: number[], values: ArrayLike<number>): TensorStats {
  const n = values.length;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < n; i++) {
    const x = values[i];
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
    sumSq += x * x;
  }
  const mean = sum / n;
  const histogram = new Array<number>(HISTOGRAM_BINS).fill(0);
  const width = (max - min) / HISTOGRAM_BINS;
  let dev = 0;
  for (let i = 0; i < n; i++) {
    const x = values[i];
    dev += (x - mean) ** 2;
    histogram[width > 0 ? Math.min(HISTOGRAM_BINS - 1, Math.floor((x - min) / width)) : 0]++;
  }
  return { name, shape, norm: sig4(Math.sqrt(sumSq)), mean: sig4(mean), std: sig4(Math.sqrt(dev / n)), min: sig4(min), max: sig4(max), histogram };
}

/** Block-to-block similarity of every projection, and every tensor's statistics. Dense float weights only. */
export function weightAnalysis(model: MobileLLM): WeightAnalysis {
  const params = model.namedParams();
  const N = model.config.numBlocks;
  const param = (name: string) => {
    const ref = params.get(name);
    if (!ref) throw new Error(`model has no parameter ${name}`);
    return ref;
  };
  const stats = (name: string, label = name) => {
    const { tensor, transposed } = param(name);
    const shape = transposed ? [...tensor.shape].reverse() : [...tensor.shape]; // checkpoint layout
    return tensorStats(label, shape, tensor.dataSync()); // the statistics do not depend on the layout
  };
  const grams = new Map<LinearKey, number[][]>();
  for (const key of LINEAR_KEYS) {
    grams.set(key, gram(Array.from({ length: N }, (_, b) => param(`${linearModule(b, key)}.weight`).tensor)));
  }
  // All seven matrices of a block as one vector: the Gram matrices add up.
  const all = Array.from({ length: N }, (_, i) => Array.from({ length: N }, (_, j) => LINEAR_KEYS.reduce((s, k) => s + grams.get(k)![i][j], 0)));
  const sim = (key: LinearKey) => cosines(grams.get(key)!);
  const uses = usesPerBlock(model.schedule, N);
  const specs = model.specs();
  return {
    similarity: { q: sim('q'), k: sim('k'), v: sim('v'), o: sim('o'), gate: sim('gate'), up: sim('up'), down: sim('down'), all: cosines(all) },
    blocks: uses.map((layers, b) => ({
      block: b,
      layers,
      // in the order they run, labelled by their name within the block
      tensors: specs.filter((s) => s.block === b).map((s) => stats(s.name, s.name.slice(blockPrefix(b).length + 1))),
    })),
    globals: specs.filter((s) => s.block === undefined).map((s) => stats(s.name)),
  };
}

// ---------------------------------------------------------------- activations

/** The value of a scalar computed by `f` (its tensors freed). */
function scalar(f: () => tf.Tensor): number {
  const t = tf.tidy(f);
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** √(mean of x²) */
function rms(x: tf.Tensor): number {
  return scalar(() => tf.sqrt(tf.mean(tf.square(x))));
}

/** Rows scaled to unit length: [T, H] → [T, H] (a zero row stays zero). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', 1, true), 1e-12)));
}

/** Mean over tokens of cos(a_t, b_t): a, b [T, H]. */
function meanTokenCos(a: tf.Tensor2D, b: tf.Tensor2D): number {
  return scalar(() => tf.mean(tf.sum(tf.mul(unitRows(a), unitRows(b)), 1)));
}

/** Attention probabilities [B, heads, T, S] → mean entropy per head over batch and queries, nats. */
function headEntropy(probs: tf.Tensor4D): number[] {
  const e = tf.tidy(() => {
    const plogp = tf.mul(probs, tf.log(tf.maximum(probs, 1e-30))); // masked keys: p = 0 → 0
    return tf.mean(tf.neg(tf.sum(plogp, 3)), [0, 2]); // [heads]
  });
  const v = Array.from(e.dataSync());
  e.dispose();
  return v;
}

/** [K, T, H] hidden states → [K][K] mean over tokens of cos between each pair. */
function stateSimilarity(states: tf.Tensor2D[]): number[][] {
  const K = states.length;
  const m = tf.tidy(() => {
    const X = tf.transpose(tf.stack(states.map(unitRows)), [1, 0, 2]); // [T, K, H]
    return tf.mean(tf.matMul(X, X, false, true), 0); // [K, K]
  });
  const v = m.dataSync();
  m.dispose();
  return Array.from({ length: K }, (_, i) => Array.from(v.subarray(i * K, (i + 1) * K), sig4));
}

/** One forward pass over `ids` (a single sequence), measured layer by layer. */
export function activationAnalysis(model: MobileLLM, ids: number[], probe: Pick<ActivationAnalysis['probe'], 'source' | 'path'>): ActivationAnalysis {
  const T = ids.length;
  if (T < 1) throw new Error('the probe has no tokens');
  const L = model.numLayers;
  const hidden: tf.Tensor2D[] = []; // [T, H] each: embedding output, outputs of layers 0 … L−2, final-norm output
  const updates: BlockUpdates[] = [];
  const entropy: number[][] = [];
  const input = tf.tensor2d([ids], [1, T], 'int32');
  const last: tf.Tensor2D[] = [];
  try {
    const trace = {
      hidden,
      onProbs: (layer: number, p: tf.Tensor4D) => {
        entropy[layer] = headEntropy(p);
        p.dispose();
      },
      onUpdates: (layer: number, u: BlockUpdates) => {
        updates[layer] = u;
      },
    };
    model.forward(input, { trace }).dispose();
    // The trace gives the last layer's output only after the final norm: rebuild it as the block does.
    last.push(tf.tidy(() => tf.add(tf.add(hidden[L - 1], updates[L - 1].attn), updates[L - 1].mlp) as tf.Tensor2D));
    const states = [...hidden.slice(0, L), last[0]]; // h_0 … h_L
    const similarity = stateSimilarity(states);
    const deltas = updates.map((u) => tf.add(u.attn, u.mlp) as tf.Tensor2D);
    let cosUpdatePrev: (number | null)[];
    try {
      cosUpdatePrev = deltas.map((d, k) => (k === 0 ? null : sig4(meanTokenCos(d, deltas[k - 1]))));
    } finally {
      tf.dispose(deltas);
    }
    let uniform = 0;
    for (let t = 0; t < T; t++) uniform += Math.log(t + 1);
    return {
      probe: { ...probe, tokens: T },
      embeddingRms: sig4(rms(states[0])),
      layers: {
        block: [...model.schedule],
        hiddenRms: states.slice(1).map((h) => sig4(rms(h))),
        cosInOut: model.schedule.map((_, k) => similarity[k][k + 1]),
        cosUpdatePrev,
        attnUpdateRms: updates.map((u) => sig4(rms(u.attn))),
        mlpUpdateRms: updates.map((u) => sig4(rms(u.mlp))),
        attnEntropy: entropy.map((e) => e.map(sig4)),
      },
      attnEntropyUniform: sig4(uniform / T),
      similarity,
    };
  } finally {
    tf.dispose([input, ...hidden, ...last, ...updates.flatMap((u) => [u.attn, u.mlp])]);
  }
}
