// The JSON the inspector produces: one schema for the CLI (`mlw inspect
// --json`, `mlw share|unshare --json`), the store (bodies of 'inspection' and
// 'conversion' reports) and the Inspector screen.
//
// Conventions: per-layer and per-block quantities are columns (one array per
// quantity, indexed by effective layer or physical block), ready for charts;
// measured and statistical floats are rounded to 4 significant digits (sig4);
// counts (parameters, bytes, FLOPs) are exact integers.
//
// What the screen draws from what:
//   block → layer diagram        costs.rows[i].schedule (effective layer → physical block)
//   cost table per strategy      costs.rows, and latency.rows when measured
//   block-to-block heatmap       analysis.weights.similarity.<matrix>   [N][N]
//   layer-to-layer heatmap       analysis.activations.similarity        [L+1][L+1]
//   per-layer line charts        analysis.activations.layers.<column>   [L]
//   a block's tensors            analysis.weights.blocks[b].tensors
import { z } from 'zod';
import { SHARING_STRATEGIES } from '../model/sharing';
import { RUNTIME_NAMES } from '../runtime/runtime';

/** x rounded to 4 significant digits, the precision of every float in these reports. */
export function sig4(x: number): number {
  return Number(x.toPrecision(4));
}

const count = z.number().int().min(0);
const positiveInt = z.number().int().positive();
/** A square matrix, row-major as nested arrays. */
const Matrix = z.array(z.array(z.number())).refine((m) => m.every((row) => row.length === m.length), 'matrix must be square');

export const Sharing = z.object({
  strategy: z.enum(SHARING_STRATEGIES),
  /** Times each block runs; 1 for 'none'. */
  repeats: positiveInt,
});

// ---------------------------------------------------------------- costs

export const COST_DTYPES = ['fp32', 'fp16', 'int8', 'int4'] as const;
export type CostDtype = (typeof COST_DTYPES)[number];

/** Bytes at each storage width; int4 counts the 4-bit codes only (group scales come on top). */
export const BytesPerDtype = z.object({ fp32: count, fp16: count, int8: count, int4: count });
export type BytesPerDtype = z.infer<typeof BytesPerDtype>;

/**
 * How a cost row relates to the model's N physical blocks:
 *   same-storage  the N blocks unshared (N layers)
 *   shared        the N blocks each run `repeats` times (N·repeats layers)
 *   same-depth    N·repeats independent blocks: the shared rows' depth bought with storage
 */
export const COST_VARIANTS = ['same-storage', 'shared', 'same-depth'] as const;
export type CostVariant = (typeof COST_VARIANTS)[number];

export const StrategyCosts = z.object({
  variant: z.enum(COST_VARIANTS),
  sharing: Sharing,
  physicalBlocks: positiveInt,
  /** Effective layer → physical block: the diagram's arrows. */
  schedule: z.array(count),
  effectiveDepth: positiveInt,
  /** Unique parameters (a shared block or a tied head counts once). */
  params: z.object({ total: count, embedding: count, nonEmbedding: count, perBlock: count, lmHead: count }),
  /** Unique parameters × bytes per value: unchanged by sharing. */
  bytes: BytesPerDtype,
  /**
   * FLOPs per token (1 multiply-add = 2 FLOPs) = linear + head + attentionPerKey · keys,
   * keys = T for each token of a T-token prefill (dense scores), S for a decode
   * step with S tokens in the cache. Matmuls and attention only.
   */
  flops: z.object({
    /** 2 · effective layers · the seven projections' multiply-adds. */
    linear: count,
    /** 2 · vocab · hidden: the output head. */
    head: count,
    /** 4 · effective layers · heads · head dim: q·kᵀ and p·v per key. */
    attentionPerKey: count,
    /** The total at costs.contextTokens keys. */
    atContext: count,
  }),
  /** Keys and values one token adds to the cache: 2 · kv heads · head dim per effective layer. */
  kvCacheBytesPerToken: BytesPerDtype,
});
export type StrategyCosts = z.infer<typeof StrategyCosts>;

export const Costs = z.object({
  /** The prefill length and decode context at which flops.atContext is given. */
  contextTokens: positiveInt,
  /** same-storage, then immediate, repeat_all, reverse (shared), then same-depth. */
  rows: z.array(StrategyCosts),
});

// ---------------------------------------------------------------- measured latency

/** Repeated timings of one variant, and its median against the first and last rows'. */
export const LatencyTiming = z.object({
  /** Median milliseconds. */
  ms: z.number().positive(),
  /** First and third quartiles, ms. */
  q1: z.number().positive(),
  q3: z.number().positive(),
  /** ms over the same-storage row's: the price of the extra depth. */
  vsSameStorage: z.number().positive(),
  /** ms over the same-depth row's: above 1 = sharing is slower than storing the blocks. */
  vsSameDepth: z.number().positive(),
  /** Runs timed. */
  samples: positiveInt,
});
export type LatencyTiming = z.infer<typeof LatencyTiming>;

export const LatencyRow = z.object({
  variant: z.enum(COST_VARIANTS),
  sharing: Sharing,
  physicalBlocks: positiveInt,
  effectiveDepth: positiveInt,
  /** One decode step: one token after contextTokens cached ones, its logits read back. */
  decode: LatencyTiming,
  /** A prompt of contextTokens tokens into an empty cache, the last position's logits read back. */
  prefill: LatencyTiming,
});
export type LatencyRow = z.infer<typeof LatencyRow>;

export const Latency = z.object({
  /** The runtime that measured: the chat's (ONNX Runtime), TensorFlow.js only where ONNX Runtime does not load. */
  runtime: z.enum(RUNTIME_NAMES),
  /** The runtime in words, e.g. "onnx (onnxruntime-node 1.30.0, cpu, 2 threads, contrib ops)". */
  runtimeDescription: z.string(),
  /** Why ONNX Runtime was not used, one line; empty when it was. */
  skipped: z.array(z.string()),
  threads: positiveInt,
  /** Physical blocks of the measured model (the model's own, or fewer to keep it quick); random-init float32 weights. */
  physicalBlocks: positiveInt,
  /** Prefill length, and the cached tokens before every timed decode step. */
  contextTokens: positiveInt,
  /** Decode steps and prefills timed per variant and round. */
  steps: positiveInt,
  prefills: positiveInt,
  rounds: positiveInt,
  /** Every variant open at once, taking turns run by run; false: one session at a time, taking turns round by round (memory). */
  together: z.boolean(),
  rows: z.array(LatencyRow),
});
export type Latency = z.infer<typeof Latency>;

// ---------------------------------------------------------------- analysis

export const HISTOGRAM_BINS = 32;

export const TensorStats = z.object({
  /** Checkpoint name, within the block for block tensors (self_attn.q_proj.weight) or in full (model.norm.weight). */
  name: z.string(),
  /** Checkpoint layout: [out, in] for projections, [hidden] for norms, [vocab, hidden] for the embedding. */
  shape: z.array(positiveInt),
  /** Frobenius norm √(Σ w²). */
  norm: z.number().min(0),
  mean: z.number(),
  std: z.number().min(0),
  min: z.number(),
  max: z.number(),
  /** HISTOGRAM_BINS equal bins over [min, max]; bin i holds [min + i·w, min + (i+1)·w), w = (max − min)/bins, the last bin closed. */
  histogram: z.array(count).length(HISTOGRAM_BINS),
});
export type TensorStats = z.infer<typeof TensorStats>;

export const WeightAnalysis = z.object({
  /**
   * Cosine similarity of each weight matrix, flattened, between every pair of
   * physical blocks, [N][N] (diagonal 1). `all` takes a block's seven matrices
   * as one vector. Near 1: the blocks are alike enough to share one copy.
   */
  similarity: z.object({
    q: Matrix,
    k: Matrix,
    v: Matrix,
    o: Matrix,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
    all: Matrix,
  }),
  /** One entry per physical block, in order. */
  blocks: z.array(
    z.object({
      block: count,
      /** Effective layers that run this block. */
      layers: z.array(count),
      /** input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down. */
      tensors: z.array(TensorStats),
    }),
  ),
  /** model.embed_tokens.weight, model.norm.weight, and lm_head.weight when the head is not shared. */
  globals: z.array(TensorStats),
});
export type WeightAnalysis = z.infer<typeof WeightAnalysis>;

export const PROBE_SOURCES = ['text', 'ids', 'builtin'] as const;

/**
 * One forward pass over a probe sequence. Per effective layer k with input
 * x = h_k and output y = h_{k+1} = x + attn + mlp (each a [T, hidden] matrix);
 * "mean cos" averages the cosine of the two vectors at each token.
 */
export const ActivationAnalysis = z
  .object({
    probe: z.object({
      /** text: a file (--probe-text); ids: given token ids; builtin: the built-in English paragraph. */
      source: z.enum(PROBE_SOURCES),
      path: z.string().nullable(),
      tokens: positiveInt,
    }),
    /** RMS of the embedding output h_0. */
    embeddingRms: z.number().min(0),
    layers: z.object({
      /** Physical block the layer runs. */
      block: z.array(count),
      /** RMS of the output, √(mean of y²) over tokens and features. */
      hiddenRms: z.array(z.number().min(0)),
      /** Mean cos(x, y): 1 = the layer hardly turns the residual stream. Also the similarity of consecutive layers' outputs (y_{k−1} = x_k). */
      cosInOut: z.array(z.number()),
      /** Mean cos(Δ_k, Δ_{k−1}) of consecutive layers' updates Δ = y − x; null for layer 0. */
      cosUpdatePrev: z.array(z.number().nullable()),
      /** RMS of the attention update (same scale as hiddenRms). */
      attnUpdateRms: z.array(z.number().min(0)),
      /** RMS of the MLP update. */
      mlpUpdateRms: z.array(z.number().min(0)),
      /** [layer][head]: mean over queries of the attention entropy −Σ p·log p, nats, in [0, log(keys seen)]. */
      attnEntropy: z.array(z.array(z.number().min(0))),
    }),
    /** Entropy of uniform causal attention averaged over the probe's queries (mean of log(t+1)): the entropy charts' ceiling. */
    attnEntropyUniform: z.number().min(0),
    /** [L+1][L+1] mean cos between hidden states; index 0 = embedding output, k = output of effective layer k−1. */
    similarity: Matrix,
  })
  .superRefine((a, ctx) => {
    const L = a.layers.block.length;
    for (const [name, col] of Object.entries(a.layers)) {
      if (col.length !== L) ctx.addIssue({ code: 'custom', path: ['layers', name], message: `has ${col.length} entries for ${L} layers` });
    }
    if (a.similarity.length !== L + 1) ctx.addIssue({ code: 'custom', path: ['similarity'], message: `is ${a.similarity.length}×, expected ${L + 1}×` });
  });
export type ActivationAnalysis = z.infer<typeof ActivationAnalysis>;

export const Analysis = z.object({
  /** The model's own schedule (effective layer → physical block). */
  schedule: z.array(count),
  weights: WeightAnalysis,
  /** null when there was no probe (no --probe-text/--probe-ids and no tokenizer for the built-in one). */
  activations: ActivationAnalysis.nullable(),
});
export type Analysis = z.infer<typeof Analysis>;

// ---------------------------------------------------------------- the inspection report

/** The shape of the model inspected, as config.json describes it. */
export const ModelShape = z.object({
  vocabSize: positiveInt,
  hiddenSize: positiveInt,
  intermediateSize: positiveInt,
  numBlocks: positiveInt,
  numHeads: positiveInt,
  numKvHeads: positiveInt,
  headDim: positiveInt,
  shareEmbedding: z.boolean(),
  maxPositions: positiveInt,
  sharing: Sharing,
});

export const InspectReport = z.object({
  version: z.literal(1),
  target: z.object({
    /** preset: an official size by name (costs only); folder: a model folder (costs and analysis). */
    kind: z.enum(['preset', 'folder']),
    /** The preset name or the folder's name. */
    name: z.string(),
    path: z.string().nullable(),
  }),
  model: ModelShape,
  /** The strategy to show first: the model's own, or the one asked for. */
  selected: Sharing,
  costs: Costs,
  /** Measured decode and prefill latency; null unless asked for (it takes a while). */
  latency: Latency.nullable(),
  /** null for presets (no weights). */
  analysis: Analysis.nullable(),
});
export type InspectReport = z.infer<typeof InspectReport>;

// ---------------------------------------------------------------- the conversion report

export const BLOCK_PICKS = ['every-other', 'average'] as const;
export type BlockPick = (typeof BLOCK_PICKS)[number];

const ConvertedModel = z.object({
  path: z.string(),
  /** Its id in the store, once recorded. */
  modelId: z.number().int().nullable(),
  /** Checkpoint layout: safetensors, safetensors-sharded, pytorch-bin, pytorch-bin-sharded. */
  format: z.string(),
  /** Stored weight dtype (F32, F16, …). */
  dtype: z.string(),
  numBlocks: positiveInt,
  sharing: Sharing,
  /** Unique parameters. */
  params: positiveInt,
});

const PerplexityResult = z.object({
  ppl: z.number().positive(),
  /** Total negative log-likelihood, nats. */
  nll: z.number().min(0),
});

export const ConversionReport = z.object({
  version: z.literal(1),
  /** share: 2N unshared blocks → N blocks run twice; unshare: a shared model → one block per effective layer. */
  operation: z.enum(['share', 'unshare']),
  /** share only: keep blocks 0, 2, 4, … or average each adjacent pair. */
  pick: z.enum(BLOCK_PICKS).nullable(),
  source: ConvertedModel,
  output: ConvertedModel,
  /** Output block i ← the source blocks it was made from (one: a copy; two: their mean). */
  blockMap: z.array(z.array(count).min(1)),
  /** Before/after on an evaluation text; null without one. Unshare keeps it (the same function); share changes it. */
  perplexity: z
    .object({
      /** The evaluation text's file. */
      text: z.string(),
      /** Tokens scored, in consecutive windows of `window` tokens. */
      tokens: positiveInt,
      window: positiveInt,
      before: PerplexityResult,
      after: PerplexityResult,
    })
    .nullable(),
});
export type ConversionReport = z.infer<typeof ConversionReport>;
