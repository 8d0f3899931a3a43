// What a layer-sharing strategy costs, from the config alone (no weights, so
// it works for every official preset): the execution schedule, unique
// parameters and bytes, FLOPs per token and KV-cache bytes per token.
//
// Per token, with L effective layers, hidden H, intermediate I, nh query heads
// and nkv key/value heads of size d, vocabulary V (MAC = multiply-add = 2 FLOPs):
//
//   block MACs      P = H·nh·d + 2·H·nkv·d + nh·d·H + 3·H·I      q, k, v, o, gate, up, down
//   linear FLOPs    2·L·P
//   head FLOPs      2·V·H                                        the logits (the embedding lookup is no matmul)
//   attention       4·L·nh·d per key the query sees              q·kᵀ and p·v, each nh·d MACs per key
//
// Prefill over T tokens: every query is scored against all T keys, because the
// implementation computes the full T×T score matrix and masks it (a causal
// kernel would skip (T−1)/2T of that). Decode at context S: one query, S keys.
// RMSNorm, RoPE, softmax and SiLU are elementwise and not counted.
//
// Sharing changes none of the stored bytes (a block is stored once however
// often it runs) but all of the per-token work, and the KV cache: each
// effective layer sees different inputs, so it keeps its own keys and values.
import { countParams, type MobileLLMConfig } from '../model/config';
import { SHARED_STRATEGIES, sharingSchedule, type LayerSharing } from '../model/sharing';
import { COST_DTYPES, type BytesPerDtype, type CostDtype, type CostVariant, type StrategyCosts } from './schema';

/** Storage per value; int4 counts the 4-bit codes only (group scales come on top). */
export const BYTES_PER_VALUE: Record<CostDtype, number> = { fp32: 4, fp16: 2, int8: 1, int4: 0.5 };

/** FLOPs per token as a function of the keys each query sees: linear + head + attentionPerKey · keys. */
export type FlopCoefficients = Omit<StrategyCosts['flops'], 'atContext'>;

function perDtype(values: number): BytesPerDtype {
  return Object.fromEntries(COST_DTYPES.map((d) => [d, Math.ceil(values * BYTES_PER_VALUE[d])])) as BytesPerDtype;
}

/** Multiply-adds of one block's seven projections for one token. */
export function blockMacsPerToken(c: MobileLLMConfig): number {
  const H = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  return H * qOut + 2 * H * kvOut + qOut * H + 3 * H * c.intermediateSize;
}

export function flopCoefficients(c: MobileLLMConfig, effectiveDepth: number): FlopCoefficients {
  return {
    linear: 2 * effectiveDepth * blockMacsPerToken(c),
    head: 2 * c.vocabSize * c.hiddenSize,
    attentionPerKey: 4 * effectiveDepth * c.numHeads * c.headDim,
  };
}

/**
 * FLOPs per token when each query sees `keys` keys: T for a T-token prefill
 * (dense scores), S for a decode step with S tokens in the cache.
 */
export function flopsPerToken(f: FlopCoefficients, keys: number): number {
  return f.linear + f.head + f.attentionPerKey * keys;
}

/** Keys and values of one token: 2 · nkv · d values per effective layer. */
export function kvCacheValuesPerToken(c: MobileLLMConfig, effectiveDepth: number): number {
  return effectiveDepth * 2 * c.numKvHeads * c.headDim;
}

/** One row of the table: the model's shape with this many blocks run this way. */
export interface VariantSpec {
  variant: CostVariant;
  numBlocks: number;
  sharing: LayerSharing;
}

/** Costs of `c`'s shape with `numBlocks` physical blocks run with `sharing`. */
export function strategyCosts(c: MobileLLMConfig, { variant, numBlocks, sharing }: VariantSpec, contextTokens: number): StrategyCosts {
  const config = { ...c, numBlocks, sharing };
  const schedule = sharingSchedule(numBlocks, sharing);
  const params = countParams(config);
  const coeff = flopCoefficients(c, schedule.length);
  return {
    variant,
    sharing,
    physicalBlocks: numBlocks,
    schedule,
    effectiveDepth: schedule.length,
    params,
    bytes: perDtype(params.total),
    flops: {
      ...coeff,
      atContext: flopsPerToken(coeff, contextTokens),
    },
    kvCacheBytesPerToken: perDtype(kvCacheValuesPerToken(c, schedule.length)),
  };
}

/**
 * The rows compared for a model of N physical blocks: unshared (same storage),
 * each sharing strategy × repeats, and N·repeats unshared blocks (same depth).
 */
export function sharingVariants(numBlocks: number, repeats: number): VariantSpec[] {
  if (!Number.isInteger(repeats) || repeats < 2) throw new Error(`repeats must be an integer ≥ 2, got ${repeats}`);
  const none: LayerSharing = { strategy: 'none', repeats: 1 };
  return [
    { variant: 'same-storage', numBlocks, sharing: none },
    ...SHARED_STRATEGIES.map((strategy) => ({ variant: 'shared' as const, numBlocks, sharing: { strategy, repeats } })),
    { variant: 'same-depth', numBlocks: numBlocks * repeats, sharing: none },
  ];
}

/** The cost table of `c`'s blocks (see sharingVariants), FLOPs given at `contextTokens`. */
export function costTable(c: MobileLLMConfig, repeats: number, contextTokens: number): StrategyCosts[] {
  if (!Number.isInteger(contextTokens) || contextTokens < 1) throw new Error(`contextTokens must be a positive integer, got ${contextTokens}`);
  return sharingVariants(c.numBlocks, repeats).map((v) => strategyCosts(c, v, contextTokens));
}
