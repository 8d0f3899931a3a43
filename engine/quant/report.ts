// The quantization report: what was done, what it saved, what it cost. Stored
// as the JSON body of a `quantization` report in the store (linked to the
// source model) and rendered as Markdown. Its perplexity is measured on the
// runtime that serves the model (ONNX Runtime when it loads), with the
// arithmetic the chat runs there, which it names: on ONNX Runtime weight-only
// w8/w4 also quantize activations to int8 inside MatMulNBits.
import { z } from 'zod';
import { formatBytes } from '../protocol/sizes';
import { QUANT_METHODS, QuantizationBlock } from './spec';

const ErrorStats = z.object({
  /** mean((y − ŷ)²) */
  mse: z.number().min(0),
  /** 10·log10(Σy² / Σ(y − ŷ)²) in dB; null when the error is exactly zero. */
  sqnrDb: z.number().nullable(),
});

const LayerRow = z.object({
  /** Checkpoint name without suffix: model.layers.<i>.<module>, model.embed_tokens or lm_head. */
  name: z.string(),
  /** Physical block, null for the embedding/head. */
  block: z.number().int().min(0).nullable(),
  /** Effective layers running this block (more than one: a shared block, quantized once). */
  layers: z.array(z.number().int().min(0)),
  /** [out, in] */
  shape: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  weight: ErrorStats,
  /** null for an untied embedding, which is only looked up. */
  output: z
    .object({
      /** This layer alone, on the float model's input to it (summed over its uses). */
      local: ErrorStats,
      /** The quantized model against the float model at this layer: the error accumulated so far. */
      model: ErrorStats,
    })
    .nullable(),
});
export type LayerRow = z.infer<typeof LayerRow>;

const PerplexityResult = z.object({
  ppl: z.number().positive(),
  /** Total negative log-likelihood, nats. */
  nll: z.number().min(0),
});

export const QuantReport = z.object({
  /** 2: perplexity measured on the serving runtime, which it names (1: always on TensorFlow.js, dequantized weights). */
  version: z.literal(2),
  method: z.enum(QUANT_METHODS),
  /** The `quantization` block written to the quantized model's config.json. */
  quantization: QuantizationBlock,
  source: z.object({
    path: z.string(),
    /** Checkpoint layout (safetensors, pytorch-bin, …) and the dtype its weights were stored in. */
    format: z.string(),
    dtype: z.string(),
    /** Unique parameters. */
    params: z.number().int().positive(),
  }),
  output: z.object({
    path: z.string(),
    /** The quantized model's id in the store, once recorded. */
    modelId: z.number().int().nullable(),
  }),
  size: z.object({
    /** Bytes of the weight files on disk (model*.safetensors / pytorch_model*.bin). */
    sourceBytes: z.number().int().positive(),
    quantizedBytes: z.number().int().positive(),
    /** quantizedBytes / sourceBytes */
    ratio: z.number().positive(),
    /** The same parameters in float32 (4 bytes each), for a comparison independent of the source dtype. */
    float32Bytes: z.number().int().positive(),
  }),
  perplexity: z
    .object({
      /** Where the evaluation text came from (a file path). */
      text: z.string(),
      /** Tokens scored (the text, cut to the evaluation limit). */
      tokens: z.number().int().positive(),
      /** Window length: the tokens are scored in consecutive windows of this many. */
      window: z.number().int().positive(),
      before: PerplexityResult,
      after: PerplexityResult,
      /** The runtime both were measured on, the one that serves the models, e.g. "onnx (onnxruntime-node 1.30.0, cpu, 2 threads, contrib ops)". */
      runtime: z.string(),
      /** How the quantized layers compute there, e.g. "MatMulNBits accuracy level 4: activations quantized to int8 per block of 32 inputs …". */
      arithmetic: z.string(),
      /**
       * Where the served arithmetic quantizes activations of a weight-only
       * method: the quantized model with float32 arithmetic on its dequantized
       * weights, on the same runtime — `after` minus this is what the kernel's
       * activation quantization costs.
       */
      dequantized: PerplexityResult.optional(),
    })
    /** null: not measured, for a model folder without a tokenizer (the text cannot be tokenized). */
    .nullable(),
  /**
   * Output errors are measured on `tokens` tokens: the first of the evaluation text, or, for a
   * folder without a tokenizer, fixed pseudo-random token ids (seeded, the same every time).
   */
  calibration: z.object({ tokens: z.number().int().positive(), ids: z.enum(['evaluation text', 'fixed random ids']).default('evaluation text') }),
  /** Every quantized layer: the embedding/head (unless kept in float) and each physical block's linears. */
  layers: z.array(LayerRow),
  timing: z.object({
    quantizeMs: z.number().min(0),
    evaluateMs: z.number().min(0),
    saveMs: z.number().min(0),
    totalMs: z.number().min(0),
  }),
  backend: z.string(),
  /** ISO 8601 */
  createdAt: z.string(),
});
export type QuantReport = z.infer<typeof QuantReport>;

/** What a report without perplexity says instead. */
export const NO_PERPLEXITY = 'Perplexity not measured: it needs a tokenizer (tokenizer.model or tokenizer.json), which this model folder lacks';

const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;
const db = (e: { sqnrDb: number | null } | undefined) => (e === undefined ? '–' : e.sqnrDb === null ? '∞' : e.sqnrDb.toFixed(1));

/** Mean SQNR (dB) over the rows that have it, exact (infinite) ones left out; null when none is finite. */
export function meanSqnr(rows: LayerRow[], pick: (r: LayerRow) => { sqnrDb: number | null } | undefined): number | null {
  const v = rows.map((r) => pick(r)?.sqnrDb).filter((x): x is number => typeof x === 'number');
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

function runsAs(l: LayerRow): string {
  if (l.block === null) return l.name === 'lm_head' ? 'head' : l.output ? 'embedding and head' : 'embedding';
  return l.layers.length > 1 ? `layers ${l.layers.join(', ')} (shared)` : `layer ${l.layers[0]}`;
}

export function reportToMarkdown(r: QuantReport): string {
  const q = r.quantization;
  const p = r.perplexity;
  const mean = (pick: (row: LayerRow) => { sqnrDb: number | null } | undefined) => db({ sqnrDb: meanSqnr(r.layers, pick) });
  const lines = [
    `# Quantization report: ${r.method}`,
    '',
    `- source: \`${r.source.path}\` (${r.source.format}, ${r.source.dtype}, ${(r.source.params / 1e6).toFixed(2)}M parameters)`,
    `- output: \`${r.output.path}\``,
    `- method: ${r.method}, ${q.bits}-bit weights, ${q.symmetric ? 'symmetric' : 'asymmetric'}, ${q.group_size ? `groups of ${q.group_size}` : 'per output channel'}` +
      (q.activations ? `; activations ${q.activations.bits}-bit ${q.activations.granularity.replace('_', ' ')} ${q.activations.range.replace('_', '-')}` : ''),
    `- quantized modules: ${q.quantized_modules.join(', ')}`,
    '',
    '| | before | after |',
    '|---|---:|---:|',
    `| weights on disk | ${formatBytes(r.size.sourceBytes)} | ${formatBytes(r.size.quantizedBytes)} (×${r.size.ratio.toFixed(3)}) |`,
    ...(p
      ? [
          `| perplexity, as served | ${p.before.ppl.toFixed(3)} | ${p.after.ppl.toFixed(3)} (${signed(p.after.ppl - p.before.ppl)}) |`,
          ...(p.dequantized
            ? [
                `| perplexity, float32 arithmetic on the dequantized weights | | ${p.dequantized.ppl.toFixed(3)} (${signed(p.dequantized.ppl - p.before.ppl)}) |`,
              ]
            : []),
        ]
      : []),
    '',
    (p
      ? `Perplexity on ${p.tokens} tokens of \`${p.text}\` in windows of ${p.window}, measured on ${p.runtime}; quantized layers: ${p.arithmetic}. `
      : `${NO_PERPLEXITY}. `) + `Float32 size: ${formatBytes(r.size.float32Bytes)}.`,
    `Mean SQNR over layers: weights ${mean((x) => x.weight)} dB, outputs ${mean((x) => x.output?.local)} dB alone, ${mean((x) => x.output?.model)} dB in the model ` +
      `(outputs on ${r.calibration.ids === 'evaluation text' ? `the first ${r.calibration.tokens} tokens` : `${r.calibration.tokens} fixed random token ids`}).`,
    '',
    '| layer | runs as | weight SQNR dB | output SQNR dB (alone) | output SQNR dB (in model) | weight MSE |',
    '|---|---|---:|---:|---:|---:|',
    ...r.layers.map(
      (l) => `| ${l.name} | ${runsAs(l)} | ${db(l.weight)} | ${db(l.output?.local)} | ${db(l.output?.model)} | ${l.weight.mse.toExponential(2)} |`,
    ),
    '',
    `Time: ${(r.timing.totalMs / 1000).toFixed(1)} s (quantize ${(r.timing.quantizeMs / 1000).toFixed(1)} s, evaluate ${(r.timing.evaluateMs / 1000).toFixed(1)} s, ` +
      `save ${(r.timing.saveMs / 1000).toFixed(1)} s) on ${r.backend}, ${r.createdAt}.`,
    '',
  ];
  return lines.join('\n');
}
