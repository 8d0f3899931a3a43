// `quantize` as a job: load the float model (an adapter merged into its base
// model first), quantize it, measure what was lost (per-layer errors on
// TensorFlow.js; perplexity on the runtime that serves the models: served.ts;
// a folder without a tokenizer gets no perplexity and its per-layer errors on
// fixed random token ids),
// save the quantized folder, and return the report (recording it in the store
// is the caller's step: record.ts).
import fs from 'node:fs';
import path from 'node:path';
import { backendInfo, describeBackend } from '../backend/select';
import { readModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { countParams } from '../model/config';
import type { MobileLLM } from '../model/model';
import type { JobContext } from '../jobs/job';
import type { RuntimeName } from '../runtime/runtime';
import { readQuantization, saveQuantizedModel } from './checkpoint';
import { layerPairs, outputErrors, weightErrors, type Perplexity } from './evaluate';
import { servedPerplexity } from './served';
import { quantizeModel } from './quantize';
import { QuantReport } from './report';
import { quantizationBlock, resolveSpec } from './spec';

export interface QuantizeParams {
  modelDir: string;
  outDir: string;
  method: string;
  /** w4 only; default: the largest of 128, 64, 32 that fits the model. */
  groupSize?: number;
  keepEmbeddingFp?: boolean;
  /**
   * The evaluation text, tokenized (BOS first), and where it came from; null for a folder
   * without a tokenizer: no perplexity, and the per-layer errors on fixed random ids.
   */
  evalIds: number[] | null;
  evalSource: string;
  /** Tokens of the evaluation text scored (default 4096). */
  maxEvalTokens?: number;
  /** Tokens the per-layer output errors are measured on (default 256). */
  calibrationTokens?: number;
  /** Dequantized-weight cache of the quantized model while it is evaluated. */
  cacheBytes?: number;
  /** The runtime perplexity is measured on (default: the one the chat would serve the models on). */
  runtime?: RuntimeName;
}

/** `n` token ids in [0, vocabSize), the same every time (a 32-bit LCG from a fixed seed): activations for a model without a tokenizer. */
export function fixedRandomIds(n: number, vocabSize: number): number[] {
  let state = 0x2545f491;
  return Array.from({ length: n }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % vocabSize;
  });
}

const perplexityResult = (p: Perplexity) => ({ ppl: p.ppl, nll: p.nll });

export const DEFAULT_EVAL_TOKENS = 4096;
export const DEFAULT_CALIBRATION_TOKENS = 256;
/** Longest window perplexity is computed over (attention memory grows with its square). */
const MAX_WINDOW = 512;

/** Bytes of a folder's weight files (model*.safetensors, pytorch_model*.bin). */
export function weightFileBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => /^(model.*\.safetensors|pytorch_model.*\.bin)$/.test(f))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

/** The output folder may be new, empty, or an earlier quantized model (replaced); never the source or anything else. */
function checkOutDir(modelDir: string, outDir: string): void {
  if (path.resolve(outDir) === path.resolve(modelDir)) throw new Error(`${outDir}: the output folder must differ from the source model folder`);
  if (!fs.existsSync(outDir) || fs.readdirSync(outDir).length === 0) return;
  const isQuantized = (() => {
    try {
      return readQuantization(outDir) !== null;
    } catch {
      return false;
    }
  })();
  if (!isQuantized) throw new Error(`${outDir}: already exists and is not a quantized model folder (choose a new folder)`);
}

export async function quantizeJob(p: QuantizeParams, ctx: JobContext): Promise<QuantReport> {
  const t0 = performance.now();
  const folder = readModelFolder(p.modelDir);
  const already = folder.quantization;
  if (already) throw new Error(`${p.modelDir}: already quantized (${already.method}); quantize the float model it was made from`);
  const { config } = folder;
  const spec = resolveSpec(config, { method: p.method, groupSize: p.groupSize, keepEmbeddingFp: p.keepEmbeddingFp });
  checkOutDir(p.modelDir, p.outDir);
  const evalIds = p.evalIds?.slice(0, p.maxEvalTokens ?? DEFAULT_EVAL_TOKENS) ?? null;
  if (evalIds && evalIds.length < 2) throw new Error(`${p.evalSource}: the evaluation text has ${evalIds.length} token(s); perplexity needs at least 2`);
  const calibrationLength = Math.min(p.calibrationTokens ?? DEFAULT_CALIBRATION_TOKENS, config.maxPositions);
  const calibration = evalIds ? evalIds.slice(0, calibrationLength) : fixedRandomIds(calibrationLength, config.vocabSize);
  const window = Math.min(config.maxPositions, MAX_WINDOW);

  ctx.progress({ phase: 'loading' });
  const loaded = loadModelFolder(folder);
  let float: MobileLLM | undefined = loaded.model;
  let quant: MobileLLM | undefined;
  try {
    const tq = performance.now();
    const q = await quantizeModel(float, spec, ctx, { cacheBytes: p.cacheBytes });
    quant = q.model;
    const quantizeMs = performance.now() - tq;

    const te = performance.now();
    ctx.progress({ phase: 'weight error' });
    const pairs = layerPairs(float, quant);
    const weight = weightErrors(pairs);
    ctx.progress({ phase: 'layer outputs' });
    const outputs = outputErrors(float, quant, pairs, calibration);
    const layerMs = performance.now() - te;

    const ts = performance.now();
    ctx.progress({ phase: 'saving' });
    await saveQuantizedModel(q, p.outDir, { tokenizerFrom: folder.tokenizerDir });
    const saveMs = performance.now() - ts;
    // The models in memory go before the served ones open: one model's weights alive at a time.
    float.dispose();
    quant.dispose();
    float = quant = undefined;

    const tp = performance.now();
    const served = evalIds
      ? await servedPerplexity({ sourceDir: p.modelDir, quantizedDir: p.outDir, spec, config, runtime: p.runtime }, evalIds, window, ctx)
      : null;
    const evaluateMs = layerMs + performance.now() - tp;

    const sourceBytes = weightFileBytes(folder.modelDir); // an adapter's: its base model's (the merged weights' size)
    const quantizedBytes = weightFileBytes(p.outDir);
    const params = countParams(config).total;
    return QuantReport.parse({
      version: 2,
      method: spec.method,
      quantization: quantizationBlock(spec, config),
      source: { path: path.resolve(p.modelDir), format: loaded.format, dtype: loaded.storedDtype, params },
      output: { path: path.resolve(p.outDir), modelId: null },
      size: { sourceBytes, quantizedBytes, ratio: quantizedBytes / sourceBytes, float32Bytes: params * 4 },
      perplexity:
        served && evalIds
          ? {
              text: p.evalSource,
              tokens: evalIds.length,
              window,
              before: perplexityResult(served.before),
              after: perplexityResult(served.after),
              ...(served.dequantized ? { dequantized: perplexityResult(served.dequantized) } : {}),
              runtime: served.runtime,
              arithmetic: served.arithmetic,
            }
          : null,
      calibration: { tokens: calibration.length, ids: evalIds ? 'evaluation text' : 'fixed random ids' },
      layers: pairs.map((pair) => ({
        name: pair.name,
        block: pair.block,
        layers: pair.layers,
        shape: [pair.quantized.outFeatures, pair.quantized.inFeatures],
        weight: weight.get(pair.name)!,
        output: outputs.get(pair.name) ?? null,
      })),
      timing: { quantizeMs, evaluateMs, saveMs, totalMs: performance.now() - t0 },
      backend: describeBackend(backendInfo()),
      createdAt: new Date().toISOString(),
    });
  } finally {
    float?.dispose();
    quant?.dispose();
  }
}
