// The hf export: a folder transformers (and PEFT) load as it is.
//
//   float, unshared     config.json (model_type llama, LlamaForCausalLM) + model.safetensors
//   float, layer-shared compact (default): config.json with auto_map + modeling_mobilellm.py,
//                       each physical block once — trust_remote_code=True runs the schedule;
//                       unrolled (`unroll`): the plain LLaMA of the effective depth, each
//                       physical block copied into every layer that runs it
//   quantized           dequantized (ŵ of engine/quant/codes.ts), as a float folder
//   adapter             adapter_config.json + adapter_model.safetensors, naming its base as
//                       another machine resolves it (train/lora.ts: Hub id or folder name)
//
// Tokenizer files are copied along. Tensors are read from the source one at a
// time and streamed into model.safetensors (no model is built).
import fs from 'node:fs';
import path from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic';
import { hfTokenizerFiles } from '../tokenizer/hf-files';
import { f32ToF16Bits, transposed, type ArrayTensor } from '../io/raw-tensor';
import { remoteCodeFiles, REMOTE_CODE_FILE } from '../io/remote-code';
import { safetensorsHeader } from '../io/safetensors';
import { readModelFolder, type ModelFolder } from '../folder/kind';
import { readOrigin } from '../hub/origin';
import { checkModelFolder } from '../folder/load';
import { configToHf, layerSchedule, type MobileLLMConfig } from '../model/config';
import { blockPrefix, tensorSpecs } from '../model/layout';
import { NO_SHARING } from '../model/sharing';
import { checkpointParams, type WeightParam } from '../onnx/params';
import { dequantize } from '../quant/codes';
import { QuantizedLinear } from '../quant/quantized-linear';
import { describeSpec } from '../quant/spec';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, baseModelName, readAdapterArrays, readAdapterConfig, writeAdapterTensors } from '../train/lora';
import type { ExportResult } from './result';

export type HfDtype = 'float32' | 'float16';

export interface HfOptions {
  /** Weights' dtype; default the dtype the model is stored in (float32 for a quantized model or bfloat16 weights). */
  dtype?: HfDtype;
  /** A layer-shared model as the plain LLaMA of its effective depth (default: compact, with our modeling file). */
  unroll?: boolean;
}

type Progress = (fraction: number, message: string) => void;

/** A parameter's values in the checkpoint's layout ([out, in]; [vocab, hidden] for tables; norms as they are). */
function checkpointValues(p: WeightParam): Float32Array {
  if (p instanceof QuantizedLinear) {
    const q = p.weight;
    return transposed(dequantize(q), q.inFeatures, q.outFeatures);
  }
  const values = p.values();
  return p.shape.length === 2 ? transposed(values, p.shape[0], p.shape[1]) : values;
}

/** The config written: the source's, or for `unroll` one block per effective layer. */
function exportedConfig(c: MobileLLMConfig, unroll: boolean, dtype: HfDtype): MobileLLMConfig {
  const depth = layerSchedule(c).length;
  return unroll ? { ...c, numBlocks: depth, sharing: NO_SHARING, torchDtype: dtype } : { ...c, torchDtype: dtype };
}

/** Source module of an exported one: block l of an unrolled model is physical block schedule[l]. */
function sourceModule(module: string, schedule: number[] | null): string {
  if (!schedule) return module;
  return module.replace(/^model\.layers\.(\d+)\./, (_, l: string) => `${blockPrefix(schedule[Number(l)])}.`);
}

/** The tokenizer files HF clients read as we tokenize (engine/tokenizer/hf-files.ts), and the source's generation_config.json. */
function copyTokenizer(from: string, to: string): string[] {
  const files = hfTokenizerFiles(from);
  const generation = path.join(from, 'generation_config.json');
  if (fs.existsSync(generation)) files['generation_config.json'] = fs.readFileSync(generation);
  for (const [name, contents] of Object.entries(files)) writeFileAtomic(path.join(to, name), contents);
  return Object.keys(files);
}

function storedDtype(folder: ModelFolder): HfDtype {
  if (folder.quantization) return 'float32';
  return checkModelFolder(folder).storedDtype === 'F16' ? 'float16' : 'float32';
}

async function exportModel(folder: ModelFolder, outDir: string, options: HfOptions, onProgress?: Progress): Promise<ExportResult> {
  const c = folder.config;
  const shared = c.sharing.strategy !== 'none';
  const unroll = shared && (options.unroll ?? false);
  const dtype = options.dtype ?? storedDtype(folder);
  const out = exportedConfig(c, unroll, dtype);
  const specs = tensorSpecs(out);
  const schedule = unroll ? layerSchedule(c) : null;
  const notes: string[] = [];
  if (folder.quantization) notes.push(`dequantized from ${describeSpec(folder.quantization)}: the float weights the integer codes stand for`);
  if (shared && !unroll) {
    notes.push(
      `layer-shared (${c.sharing.strategy} ×${c.sharing.repeats}), compact: load with AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) (runs ${REMOTE_CODE_FILE})`,
    );
  }
  if (unroll) notes.push(`unrolled: ${c.numBlocks} shared blocks written as ${out.numBlocks} plain LLaMA layers`);
  if (dtype === 'float16') notes.push('float16 weights: transformers computes in float16 unless loaded with dtype=torch.float32');
  if (options.unroll && !shared) notes.push('the model shares no layers: nothing to unroll');

  const params = checkpointParams(folder.dir, folder.quantization);
  try {
    const files = await writeDirAtomic(outDir, (tmp) => {
      writeFileAtomic(path.join(tmp, 'config.json'), JSON.stringify(configToHf(out), null, 2) + '\n');
      const header = safetensorsHeader(
        specs.map((s) => [s.name, { dtype: dtype === 'float16' ? 'F16' : 'F32', shape: s.shape }]),
        { format: 'pt' },
      );
      writeFileAtomic(
        path.join(tmp, 'model.safetensors'),
        (function* () {
          yield header;
          for (const [i, s] of specs.entries()) {
            onProgress?.(i / specs.length, `writing ${s.name}`);
            const values = checkpointValues(params.get(sourceModule(s.module, schedule)));
            yield dtype === 'float16' ? new Uint8Array(f32ToF16Bits(values).buffer) : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
          }
        })(),
      );
      const extra = remoteCodeFiles(out);
      for (const [name, contents] of Object.entries(extra)) writeFileAtomic(path.join(tmp, name), contents);
      return ['config.json', 'model.safetensors', ...Object.keys(extra), ...copyTokenizer(folder.tokenizerDir, tmp)];
    });
    onProgress?.(1, `wrote ${outDir}`);
    return { outDir, files, notes };
  } finally {
    params.close();
  }
}

/** An adapter's tensors with every block's copied to each effective layer that runs it (for an unrolled base). */
function unrolledAdapter(tensors: Map<string, ArrayTensor>, schedule: number[]): Map<string, ArrayTensor> {
  const out = new Map<string, ArrayTensor>();
  schedule.forEach((b, layer) => {
    const from = `base_model.model.${blockPrefix(b)}.`;
    for (const [name, t] of tensors) if (name.startsWith(from)) out.set(`base_model.model.${blockPrefix(layer)}.${name.slice(from.length)}`, t);
  });
  return out;
}

async function exportAdapter(folder: ModelFolder, outDir: string, options: HfOptions, onProgress?: Progress): Promise<ExportResult> {
  const c = folder.config;
  const unroll = c.sharing.strategy !== 'none' && (options.unroll ?? false);
  const { options: lora } = readAdapterConfig(folder.dir);
  const arrays = readAdapterArrays(folder.dir);
  const tensors = unroll ? unrolledAdapter(arrays, layerSchedule(c)) : arrays;
  const base = baseModelName(folder.modelDir);
  const notes = [
    `base model: ${base.name}${base.revision ? ` at ${base.revision}` : ''} — AutoPeftModelForCausalLM.from_pretrained(dir) loads it by that name (a Hub id, or a folder of that name in the working directory)`,
  ];
  if (!readOrigin(folder.modelDir)) {
    notes.push(
      `the base is a local folder: give the other machine its hf export, named ${base.name} (mlw export ${folder.modelDir} --format hf${unroll ? ' --unroll' : ''} --out ${base.name})`,
    );
  }
  if (unroll) notes.push(`unrolled: the adapter of each shared block copied to every layer that runs it, for the unrolled base`);
  if (options.dtype === 'float16') notes.push('adapter weights are written in float32');
  onProgress?.(0, `writing ${ADAPTER_WEIGHTS}`);
  const files = await writeDirAtomic(outDir, (tmp) => {
    writeAdapterTensors(tensors, lora, tmp, folder.modelDir);
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS, ...copyTokenizer(folder.tokenizerDir, tmp)];
  });
  onProgress?.(1, `wrote ${outDir}`);
  return { outDir, files, notes };
}

/**
 * Exports the model or adapter folder at `modelDir` as a Hugging Face folder at
 * `outDir` (written atomically: replaced only once complete).
 */
export async function exportHf(modelDir: string, outDir: string, options: HfOptions = {}, onProgress?: Progress): Promise<ExportResult> {
  const folder = readModelFolder(modelDir);
  return folder.kind === 'adapter' ? exportAdapter(folder, outDir, options, onProgress) : exportModel(folder, outDir, options, onProgress);
}
