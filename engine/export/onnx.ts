// The onnx export: a folder in the layout transformers.js reads (Optimum's
// decoder layout, without a merged branch), built by engine/onnx's one MobileLLM graph with
// the transformers.js interface (mobilellm.ts, `io`):
//
//   config.json                 plain LLaMA (model_type llama) of the EFFECTIVE depth: transformers.js
//                               makes one past_key_values.{l} pair per num_hidden_layers
//   generation_config.json      bos/eos ids
//   tokenizer.json, tokenizer_config.json, …   copied from the model folder
//   onnx/model.onnx             float32, standard ONNX operators only (dtype fp32)
//   onnx/model_quantized.onnx   int8 weights (dtype q8): MatMulNBits 8-bit (our w8 is weight-only; the q8
//                               files of transformers.js' scripts/quantize.py are ONNX Runtime's dynamic
//                               quantization, MatMulInteger on activations quantized per tensor), or
//                               MatMulInteger on per-token activations for a w8a8 folder
//   onnx/model_q4.onnx          int4 weights (dtype q4): MatMulNBits 4-bit, the operator of transformers.js'
//                               own q4 files (MatMul4BitsQuantizer)
//
// A layer-shared block's initializers are stored once in each file and read
// by every effective layer that runs it. Quantized files hold engine/quant's
// codes: the folder's own when it is quantized, else made now from the float
// weights (w8 per channel; w4 with resolveSpec's group size). Weights stay
// inside the model up to 2 GB; beyond, in `<file>_data` beside it, which
// config.json's transformers.js_config.use_external_data_format announces.
import fs from 'node:fs';
import path from 'node:path';
import { initBackend } from '../backend/select';
import { writeDirAtomic } from '../io/atomic';
import { readModelFolder, type ModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { configToHf, effectiveDepth, type MobileLLMConfig } from '../model/config';
import { NO_SHARING } from '../model/sharing';
import type { MobileLLM } from '../model/model';
import { exportGraph } from '../onnx/mobilellm';
import { checkpointParams, modelParams, type FloatParam, type ModelParams, type WeightParam } from '../onnx/params';
import { describeNBitsArithmetic, int8BlockSize, SERVED_NBITS_COMPUTE, type NBitsCompute } from '../onnx/quantized';
import { DequantCache, QuantizedLinear } from '../quant/quantized-linear';
import { activationQuant, quantizeWeight } from '../quant/quantize';
import { describeSpec, resolveSpec, type QuantSpec } from '../quant/spec';
import { hfTokenizerFiles } from '../tokenizer/hf-files';
import type { ExportResult } from './result';

/** transformers.js dtypes of the quantized files, and their names (utils/dtypes.js: DEFAULT_DTYPE_SUFFIX_MAPPING). */
export const ONNX_QUANTIZED = { q8: 'model_quantized.onnx', q4: 'model_q4.onnx' } as const;
export type OnnxQuantized = keyof typeof ONNX_QUANTIZED;

export interface OnnxOptions {
  /**
   * Quantized files to write beside model.onnx. Default: both for a float
   * folder; the one of its own method for a quantized folder (w8/w8a8 → q8,
   * w4 → q4), which cannot give the other.
   */
  quantized?: OnnxQuantized[];
  /** MatMulNBits' arithmetic in the quantized files; default what the chat serves (SERVED_NBITS_COMPUTE). */
  nbitsCompute?: NBitsCompute;
  /** Weights up to this many bytes stay inside each .onnx file, more go to `<file>_data`; default INLINE_WEIGHTS_UP_TO. */
  inlineWeightsUpTo?: number;
}

/** Protobuf's limit is 2 GiB for a whole model: initializers up to this many bytes stay inside the .onnx file. */
export const INLINE_WEIGHTS_UP_TO = 2_000_000_000;

/** The quantization a dtype stands for, on a float model. */
function specFor(dtype: OnnxQuantized, c: MobileLLMConfig): QuantSpec {
  return resolveSpec(c, { method: dtype === 'q8' ? 'w8' : 'w4' });
}

function dtypeOf(spec: QuantSpec): OnnxQuantized {
  return spec.method === 'w4' ? 'q4' : 'q8';
}

/** The float parameters of `params` with every linear and table quantized by `spec` (as engine/quant's quantizeModel does), as they are read. */
function quantizedParams(params: ModelParams, spec: QuantSpec): ModelParams {
  const bySpec = new Map(params.specs.map((s) => [s.module, s]));
  const act = activationQuant(spec);
  const noCache = new DequantCache(0);
  return {
    ...params,
    get(module: string): WeightParam {
      const s = bySpec.get(module)!;
      const p = params.get(module);
      if (s.kind === 'norm' || (s.kind !== 'linear' && spec.keepEmbeddingFp)) return p;
      const [inFeatures, outFeatures] = (p as FloatParam).shape; // held [in, out]; tables [hidden, vocab]
      return new QuantizedLinear(quantizeWeight((p as FloatParam).values(), inFeatures, outFeatures, spec), act, noCache);
    },
  };
}

/** config.json for transformers.js: plain LLaMA of the effective depth (a shared block's layers each get their own cache). */
function transformersConfig(c: MobileLLMConfig, externalData: string[]): Record<string, unknown> {
  return configToHf(
    { ...c, numBlocks: effectiveDepth(c), sharing: NO_SHARING, torchDtype: 'float32' },
    {
      use_cache: true,
      ...(externalData.length ? { 'transformers.js_config': { use_external_data_format: Object.fromEntries(externalData.map((f) => [f, 1])) } } : {}),
    },
  );
}

/** The model's parameters, however the folder stores them; close() when done. */
async function openParams(folder: ModelFolder): Promise<{ params: ModelParams; close(): void }> {
  if (folder.kind !== 'adapter') {
    const params = checkpointParams(folder.dir, folder.quantization);
    return { params, close: () => params.close() };
  }
  await initBackend();
  const model: MobileLLM = loadModelFolder(folder).model; // the adapter merged into its base
  return { params: modelParams(model), close: () => model.dispose() };
}

/**
 * Exports the model folder at `modelDir` as a transformers.js folder at
 * `outDir` (written atomically: replaced only once complete).
 */
export async function exportOnnx(
  modelDir: string,
  outDir: string,
  options: OnnxOptions = {},
  onProgress?: (fraction: number, message: string) => void,
): Promise<ExportResult> {
  const folder = readModelFolder(modelDir);
  const c = folder.config;
  const own = folder.quantization;
  const notes: string[] = [];
  // What each file holds: null for model.onnx (float), else the codes' spec.
  const graphs: { file: string; spec: QuantSpec | null }[] = [{ file: 'model.onnx', spec: null }];
  for (const dtype of options.quantized ?? (own ? [dtypeOf(own)] : (['q8', 'q4'] as const))) {
    if (own && dtype !== dtypeOf(own)) {
      throw new Error(`${modelDir}: quantized ${describeSpec(own)}, so only ${dtypeOf(own)} can be exported (${dtype} needs the float model)`);
    }
    let spec = own;
    try {
      spec ??= specFor(dtype, c);
    } catch (err) {
      if (options.quantized) throw err;
      notes.push(`no onnx/${ONNX_QUANTIZED[dtype]}: ${(err as Error).message}`); // by default, the ones the shape allows
      continue;
    }
    graphs.push({ file: ONNX_QUANTIZED[dtype], spec });
  }
  const nbitsCompute = options.nbitsCompute ?? SERVED_NBITS_COMPUTE;
  const depth = effectiveDepth(c);
  if (depth !== c.numBlocks) {
    notes.push(
      `layer sharing (${c.sharing.strategy} ×${c.sharing.repeats}): config.json says ${depth} layers, each with its own KV cache; the ${c.numBlocks} blocks' weights are stored once`,
    );
  }

  const files = await writeDirAtomic(outDir, async (tmp) => {
    const written: string[] = [];
    const write = (name: string, data: Uint8Array | string) => {
      fs.mkdirSync(path.dirname(path.join(tmp, name)), { recursive: true });
      fs.writeFileSync(path.join(tmp, name), data);
      written.push(name);
    };
    const external: string[] = [];
    const { params, close } = await openParams(folder);
    try {
      for (const [i, { file, spec }] of graphs.entries()) {
        onProgress?.(i / (graphs.length + 1), `writing onnx/${file}`);
        // model.onnx of a quantized folder: its codes dequantized with standard operators.
        const quantized = spec && !own;
        const graph = exportGraph(quantized ? quantizedParams(params, spec) : params, {
          ops: 'plain',
          weightOps: spec ? 'contrib' : 'plain',
          io: 'transformers.js',
          nbitsCompute,
          weightsFile: `${file}_data`,
          inlineWeightsUpTo: options.inlineWeightsUpTo ?? INLINE_WEIGHTS_UP_TO,
        });
        write(`onnx/${file}`, graph.model);
        if (graph.weights.length) {
          write(`onnx/${file}_data`, graph.weights);
          external.push(file);
        }
        if (!spec)
          notes.push(`onnx/model.onnx: float32, standard ONNX operators (opset 21)${own ? `, ${describeSpec(own)} codes dequantized in the graph` : ''}`);
        else {
          const arithmetic =
            spec.method === 'w8a8'
              ? 'MatMulInteger on activations quantized per token (standard operators)'
              : `${describeNBitsArithmetic(spec.method === 'w4' ? 4 : 8, spec.groupSize ?? int8BlockSize(c.hiddenSize), nbitsCompute)} (com.microsoft: ONNX Runtime only)`;
          notes.push(`onnx/${file} (dtype ${dtypeOf(spec)}): ${describeSpec(spec)}; ${arithmetic}`);
        }
      }
    } finally {
      close();
    }
    onProgress?.(graphs.length / (graphs.length + 1), 'writing config and tokenizer');
    write('config.json', JSON.stringify(transformersConfig(c, external), null, 2) + '\n');
    write('generation_config.json', JSON.stringify({ bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId }, null, 2) + '\n');
    for (const [name, contents] of Object.entries(hfTokenizerFiles(folder.tokenizerDir))) write(name, contents);
    if (!written.includes('tokenizer.json'))
      notes.push(`${folder.tokenizerDir}: no tokenizer, so transformers.js pipelines cannot tokenize text (models given input_ids work)`);
    return written;
  });
  onProgress?.(1, 'done');
  return { outDir, files, notes };
}
