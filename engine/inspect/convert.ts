// Converting between layer-shared and independent blocks.
//
//   share    2N unshared blocks → N blocks, each run twice (any strategy):
//              block i = source block 2i                 (every-other)
//              block i = ½ (source 2i + source 2i+1)     (average)
//   unshare  a shared model → one block per effective layer,
//              block k = a copy of the physical block layer k runs:
//            the same function, now with weights each layer can fine-tune alone.
//
// The embedding, final norm and head are copied. The new model owns its
// tensors; the source is untouched. convertJob makes a checkpoint folder of
// it (from an adapter: of the adapter merged into its base model), with the
// perplexity before and after on an evaluation text.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { countParams, type MobileLLMConfig } from '../model/config';
import { TokenEmbedding } from '../model/embedding';
import { DenseLinear, type Linear } from '../model/linear';
import { MobileLLM, buildWeights, layerOf, normOf } from '../model/model';
import { NO_SHARING, type SharedStrategy } from '../model/sharing';
import { saveModel } from '../io/checkpoint';
import { readModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import type { JobContext } from '../jobs/job';
import { perplexity } from '../quant/evaluate';
import { ConversionReport, type BlockPick } from './schema';

export type Conversion = { operation: 'share'; strategy: SharedStrategy; pick: BlockPick } | { operation: 'unshare' };

/** Tokens of the evaluation text scored by default. */
export const DEFAULT_EVAL_TOKENS = 4096;
/** Longest window perplexity is computed over (attention memory grows with its square). */
const MAX_WINDOW = 512;

function denseWeight(l: Linear): tf.Tensor2D {
  if (!(l instanceof DenseLinear)) throw new Error('layer conversion needs dense float weights (convert the float model, then quantize)');
  return l.w;
}

function embeddingWeight(l: Linear): tf.Tensor2D {
  if (!(l instanceof TokenEmbedding)) throw new Error('layer conversion needs a float embedding and head');
  return l.wT;
}

/**
 * A new model with `config`: each tensor of block i is the mean of that tensor
 * over source blocks blockMap[i] (a copy for one block); the rest is copied.
 */
function rebuild(m: MobileLLM, config: MobileLLMConfig, blockMap: number[][]): MobileLLM {
  const w = m.weights;
  const mean = <T extends tf.Tensor>(ts: T[]): T => (ts.length === 1 ? tf.clone(ts[0]) : tf.tidy(() => tf.div(tf.addN(ts), ts.length) as T));
  const weights = buildWeights(
    config,
    (s) => {
      if (s.kind === 'embedding' || s.kind === 'head') return new TokenEmbedding(tf.clone(embeddingWeight(layerOf(w, s))));
      if (s.block === undefined) return tf.clone(normOf(w, s));
      const sources = blockMap[s.block].map((b) => ({ ...s, block: b }));
      if (s.kind === 'norm') return mean(sources.map((src) => normOf(w, src)));
      return new DenseLinear(mean(sources.map((src) => denseWeight(layerOf(w, src)))));
    },
    m.layout,
  );
  return new MobileLLM(config, weights, m.layout);
}

/** The source blocks of each output block when 2N blocks become N. */
export function shareBlockMap(numBlocks: number, pick: BlockPick): number[][] {
  return Array.from({ length: numBlocks / 2 }, (_, i) => (pick === 'every-other' ? [2 * i] : [2 * i, 2 * i + 1]));
}

/** Throws unless a model of this config can undergo `conversion`. */
export function checkConvertible(c: MobileLLMConfig, conversion: Conversion): void {
  if (conversion.operation === 'unshare') {
    if (c.sharing.strategy === 'none') throw new Error('the model does not share its layers: nothing to unshare');
    return;
  }
  if (c.sharing.strategy !== 'none') throw new Error(`the model already shares its layers (${c.sharing.strategy} ×${c.sharing.repeats}); unshare it first`);
  if (c.numBlocks < 2 || c.numBlocks % 2 !== 0) throw new Error(`sharing halves the blocks: needs an even number of blocks, the model has ${c.numBlocks}`);
}

/** 2N unshared blocks → N blocks run twice with `strategy`. */
export function shareModel(m: MobileLLM, strategy: SharedStrategy, pick: BlockPick): MobileLLM {
  const c = m.config;
  checkConvertible(c, { operation: 'share', strategy, pick });
  const blockMap = shareBlockMap(c.numBlocks, pick);
  return rebuild(m, { ...c, numBlocks: blockMap.length, sharing: { strategy, repeats: 2 } }, blockMap);
}

/** The source block of each output block when a shared model is unshared: its schedule. */
export function unshareBlockMap(m: MobileLLM): number[][] {
  return m.schedule.map((b) => [b]);
}

/** A shared model → one independent block per effective layer (the same logits). */
export function unshareModel(m: MobileLLM): MobileLLM {
  checkConvertible(m.config, { operation: 'unshare' });
  return rebuild(m, { ...m.config, numBlocks: m.numLayers, sharing: NO_SHARING }, unshareBlockMap(m));
}

export interface ConvertParams {
  modelDir: string;
  outDir: string;
  conversion: Conversion;
  /** The evaluation text, tokenized (BOS first), and its file; without it no perplexity is measured. */
  evalText?: { ids: number[]; source: string };
  /** Tokens of the evaluation text scored (default DEFAULT_EVAL_TOKENS). */
  maxEvalTokens?: number;
}

/** The output folder must be new or empty, and not the source. */
function checkOutDir(modelDir: string, outDir: string): void {
  if (path.resolve(outDir) === path.resolve(modelDir)) throw new Error(`${outDir}: the output folder must differ from the source model folder`);
  if (fs.existsSync(outDir) && fs.readdirSync(outDir).length > 0) throw new Error(`${outDir}: already exists and is not empty (choose a new folder)`);
}

/** Loads, converts, measures and saves (as float16 when the source was float16, else float32); returns the report (not yet recorded). */
export async function convertJob(p: ConvertParams, ctx: JobContext): Promise<ConversionReport> {
  checkOutDir(p.modelDir, p.outDir);
  const folder = readModelFolder(p.modelDir);
  if (folder.quantization) throw new Error(`${p.modelDir}: a quantized model; convert its float source, then quantize`);
  checkConvertible(folder.config, p.conversion); // before loading the weights
  ctx.progress({ phase: 'loading' });
  const { model, format, storedDtype } = loadModelFolder(folder);
  let out: MobileLLM | undefined;
  try {
    const conv = p.conversion;
    out = conv.operation === 'share' ? shareModel(model, conv.strategy, conv.pick) : unshareModel(model);
    const blockMap = conv.operation === 'share' ? shareBlockMap(model.config.numBlocks, conv.pick) : unshareBlockMap(model);
    let ppl: ConversionReport['perplexity'] = null;
    if (p.evalText) {
      const ids = p.evalText.ids.slice(0, p.maxEvalTokens ?? DEFAULT_EVAL_TOKENS);
      const window = Math.min(MAX_WINDOW, model.config.maxPositions);
      const before = await perplexity(model, ids, window, ctx, 'perplexity before');
      const after = await perplexity(out, ids, window, ctx, 'perplexity after');
      ppl = { text: p.evalText.source, tokens: ids.length, window, before: { ppl: before.ppl, nll: before.nll }, after: { ppl: after.ppl, nll: after.nll } };
    }
    const dtype = storedDtype === 'F16' ? 'float16' : 'float32';
    ctx.progress({ phase: 'saving' });
    await saveModel(out, p.outDir, { dtype, tokenizerFrom: folder.tokenizerDir });
    const describe = (m: MobileLLM, dir: string, fmt: string, dt: string) => ({
      path: path.resolve(dir),
      modelId: null,
      format: fmt,
      dtype: dt,
      numBlocks: m.config.numBlocks,
      sharing: m.config.sharing,
      params: countParams(m.config).total,
    });
    return ConversionReport.parse({
      version: 1,
      operation: conv.operation,
      pick: conv.operation === 'share' ? conv.pick : null,
      source: describe(model, p.modelDir, format, storedDtype),
      output: describe(out, p.outDir, 'safetensors', dtype === 'float16' ? 'F16' : 'F32'),
      blockMap,
      perplexity: ppl,
    });
  } finally {
    model.dispose();
    out?.dispose();
  }
}
