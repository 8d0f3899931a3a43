// What a quantization is: the method, its options, and the `quantization`
// block of config.json that records it in a quantized model folder.
//
//   w8a8  weights int8 per output channel, symmetric min-max; activations
//         quantized per token, asymmetric min-max 8-bit, at the input of every
//         linear layer, at run time (the MobileLLM paper's W8A8 PTQ, simulated).
//   w8    weight-only int8 per output channel, symmetric.
//   w4    weight-only int4, groups of G inputs per output channel, asymmetric.
//
// The config.json block (format_version 1), for w4 with the embedding kept:
//   "quantization": {
//     "format_version": 1,
//     "method": "w4",            // "w8a8" | "w8" | "w4"
//     "bits": 4,                 // weight bits: 8 for w8a8/w8, 4 for w4
//     "symmetric": false,        // true for w8a8/w8 (no zero point), false for w4
//     "group_size": 64,          // w4: inputs per scale (32, 64 or 128); null for per-channel int8
//     "channel_axis": 0,         // axis of the stored [out, in] weight with one scale per index: output channels
//     "activations": null,       // w8a8: {"bits": 8, "granularity": "per_token", "symmetric": false, "range": "min_max"}
//     "quantized_modules": ["self_attn.q_proj", …, "mlp.down_proj"],   // plus "embed_tokens" (and "lm_head" when untied)
//     "unquantized_dtype": "float16"  // storage of the embedding/head when kept (norms are always float32)
//   }
// Tensor names and layouts: see checkpoint.ts.
import { z } from 'zod';
import { blockPrefix, tensorSpecs } from '../model/layout';
import { NO_SHARING } from '../model/sharing';
import type { MobileLLMConfig } from '../model/config';

export const QUANT_METHODS = ['w8a8', 'w8', 'w4'] as const;
export type QuantMethod = (typeof QUANT_METHODS)[number];
export const GROUP_SIZES = [32, 64, 128] as const;

export interface QuantSpec {
  method: QuantMethod;
  /** w4 only: inputs per scale and zero point. */
  groupSize: number | null;
  /** Keep the embedding (and an untied head) in float16 instead of quantizing them. */
  keepEmbeddingFp: boolean;
}

export function parseMethod(s: string): QuantMethod {
  if ((QUANT_METHODS as readonly string[]).includes(s)) return s as QuantMethod;
  throw new Error(`unknown quantization method "${s}" (expected ${QUANT_METHODS.join(', ')})`);
}

/**
 * Every layer that would be quantized, named as `quantized_modules` names
 * them (within a block, e.g. "mlp.up_proj", then "embed_tokens" and an untied
 * "lm_head"), with its input width (the group size must divide each).
 */
function quantizedInputWidths(c: MobileLLMConfig, keepEmbeddingFp: boolean): Map<string, number> {
  const specs = tensorSpecs({ ...c, numBlocks: 1, sharing: NO_SHARING });
  const linears = specs.filter((s) => s.kind === 'linear').map((s) => [s.module.slice(blockPrefix(0).length + 1), s.shape[1]] as const);
  const tables = keepEmbeddingFp
    ? []
    : specs.filter((s) => s.kind === 'embedding' || s.kind === 'head').map((s) => [s.module.replace(/^model\./, ''), s.shape[1]] as const);
  return new Map([...linears, ...tables]);
}

/**
 * The spec for a model: checks the options against its shape. Without a
 * group size, w4 takes the largest of 128, 64, 32 that divides every
 * quantized input width (MobileLLM-125M's 576 is not a multiple of 128).
 */
export function resolveSpec(c: MobileLLMConfig, opts: { method: string; groupSize?: number; keepEmbeddingFp?: boolean }): QuantSpec {
  const method = parseMethod(opts.method);
  const keepEmbeddingFp = opts.keepEmbeddingFp ?? false;
  if (method !== 'w4') {
    if (opts.groupSize !== undefined) throw new Error(`group size applies to w4 only (${method} has one scale per output channel)`);
    return { method, groupSize: null, keepEmbeddingFp };
  }
  const widths = quantizedInputWidths(c, keepEmbeddingFp);
  if (opts.groupSize !== undefined) {
    const g = opts.groupSize;
    if (!(GROUP_SIZES as readonly number[]).includes(g)) throw new Error(`group size ${g} is not supported (expected ${GROUP_SIZES.join(', ')})`);
    for (const [name, width] of widths) {
      if (width % g !== 0) throw new Error(`group size ${g} does not divide the input width ${width} of ${name}`);
    }
    return { method, groupSize: g, keepEmbeddingFp };
  }
  const fits = [...GROUP_SIZES].reverse().find((g) => [...widths.values()].every((w) => w % g === 0));
  if (fits === undefined) {
    const odd = [...widths].find(([, w]) => w % GROUP_SIZES[0] !== 0)!;
    throw new Error(`no group size of ${GROUP_SIZES.join(', ')} divides the input width ${odd[1]} of ${odd[0]}`);
  }
  return { method, groupSize: fits, keepEmbeddingFp };
}

/** Module names (relative to a block, or embed_tokens / lm_head) that a spec quantizes. */
export function quantizedModules(spec: QuantSpec, c: MobileLLMConfig): string[] {
  return [...quantizedInputWidths(c, spec.keepEmbeddingFp).keys()];
}

const ActivationBlock = z.object({
  bits: z.literal(8),
  granularity: z.literal('per_token'),
  symmetric: z.literal(false),
  range: z.literal('min_max'),
});

const common = {
  format_version: z.literal(1),
  channel_axis: z.literal(0),
  quantized_modules: z.array(z.string()),
  unquantized_dtype: z.literal('float16'),
};

/** The `quantization` block of a quantized model's config.json. */
export const QuantizationBlock = z.discriminatedUnion('method', [
  z.object({ method: z.literal('w8a8'), bits: z.literal(8), symmetric: z.literal(true), group_size: z.null(), activations: ActivationBlock, ...common }),
  z.object({ method: z.literal('w8'), bits: z.literal(8), symmetric: z.literal(true), group_size: z.null(), activations: z.null(), ...common }),
  z.object({
    method: z.literal('w4'),
    bits: z.literal(4),
    symmetric: z.literal(false),
    group_size: z.union(GROUP_SIZES.map((g) => z.literal(g)) as [z.ZodLiteral<32>, z.ZodLiteral<64>, z.ZodLiteral<128>]),
    activations: z.null(),
    ...common,
  }),
]);
export type QuantizationBlock = z.infer<typeof QuantizationBlock>;

export function quantizationBlock(spec: QuantSpec, c: MobileLLMConfig): QuantizationBlock {
  const base = { format_version: 1, channel_axis: 0, quantized_modules: quantizedModules(spec, c), unquantized_dtype: 'float16' } as const;
  switch (spec.method) {
    case 'w8a8':
      return {
        ...base,
        method: 'w8a8',
        bits: 8,
        symmetric: true,
        group_size: null,
        activations: { bits: 8, granularity: 'per_token', symmetric: false, range: 'min_max' },
      };
    case 'w8':
      return { ...base, method: 'w8', bits: 8, symmetric: true, group_size: null, activations: null };
    case 'w4':
      return { ...base, method: 'w4', bits: 4, symmetric: false, group_size: spec.groupSize as 32 | 64 | 128, activations: null };
  }
}

/** Parses a config.json `quantization` block; `source` names the file in errors. */
export function parseQuantizationBlock(json: unknown, c: MobileLLMConfig, source: string): QuantSpec {
  const parsed = QuantizationBlock.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${source}: invalid "quantization.${issue.path.join('.')}": ${issue.message}`);
  }
  const b = parsed.data;
  const mods = new Set(b.quantized_modules);
  const linears = [...quantizedInputWidths(c, true).keys()];
  const missing = linears.find((m) => !mods.has(m));
  if (missing) throw new Error(`${source}: quantization.quantized_modules lacks "${missing}" (every linear layer is quantized)`);
  const spec: QuantSpec = { method: b.method, groupSize: b.group_size, keepEmbeddingFp: !mods.has('embed_tokens') };
  const expected = quantizedModules(spec, c);
  const extra = b.quantized_modules.find((m) => !expected.includes(m));
  if (extra || mods.size !== expected.length) {
    throw new Error(
      `${source}: quantization.quantized_modules ${JSON.stringify(b.quantized_modules)} do not match this model (expected ${JSON.stringify(expected)})`,
    );
  }
  return spec;
}

/** One line for `mlw info` and reports, e.g. "w4 (int4 weights, groups of 64, asymmetric; embedding float16)". */
export function describeSpec(spec: QuantSpec): string {
  const what =
    spec.method === 'w8a8'
      ? 'int8 weights per channel + int8 activations per token'
      : spec.method === 'w8'
        ? 'int8 weights per channel'
        : `int4 weights, groups of ${spec.groupSize}, asymmetric`;
  return `${spec.method} (${what}; embedding ${spec.keepEmbeddingFp ? 'float16' : 'quantized'})`;
}
