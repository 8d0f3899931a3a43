// What a model folder is, read from its JSON files alone (no weights):
//
//   float       config.json + model.safetensors, a sharded index, or pytorch_model.bin
//   quantized   config.json with our "quantization" block (engine/quant/spec.ts) + model.safetensors
//   adapter     adapter_config.json + adapter_model.safetensors (PEFT LoRA), applied to the
//               float model folder its base_model_name_or_path names
//
// Layer sharing (config.json's layer_sharing) is part of the architecture, in
// `config.sharing`, whichever the kind. A folder none of these describe is
// refused with one line that every command and request shows as it is.
import fs from 'node:fs';
import path from 'node:path';
import type { ErrorKind } from '../errors';
import { readConfigJson } from '../io/checkpoint';
import { configFromHf, type MobileLLMConfig } from '../model/config';
import { parseQuantizationBlock, type QuantSpec } from '../quant/spec';
import { hasTokenizer } from '../tokenizer/tokenizer';
import { ADAPTER_CONFIG, readAdapterConfig, type AdapterInfo } from '../train/lora';

export type FolderKind = 'float' | 'quantized' | 'adapter';

export interface ModelFolder {
  /** The folder as it was given. */
  dir: string;
  kind: FolderKind;
  /** The folder with the config.json and weights of the architecture: an adapter's base model, else `dir`. */
  modelDir: string;
  /** The folder with the tokenizer and chat template: an adapter's own when it has a tokenizer, else `modelDir`. */
  tokenizerDir: string;
  /** The architecture (an adapter's: its base model's). */
  config: MobileLLMConfig;
  /** `dir`/config.json as written; null for an adapter, which has none. */
  configJson: Record<string, unknown> | null;
  /** How the weights are quantized; null for float weights (an adapter's base is always float). */
  quantization: QuantSpec | null;
  /** An adapter's options and base model; null for a model folder. */
  adapter: AdapterInfo | null;
}

/** A path that is not a model folder the workbench can use; the message says why, in one line. */
export class UnusableFolderError extends Error {
  override name = 'UnusableFolderError';
  constructor(
    message: string,
    /** engine/errors.ts: a missing folder is not found, any other is bad input. */
    readonly kind: Extract<ErrorKind, 'not_found' | 'bad_input'> = 'bad_input',
  ) {
    super(message);
  }
}

/** Recognises the model folder at `dir`; throws UnusableFolderError (or a file's own one-line error) when it is none. */
export function readModelFolder(dir: string): ModelFolder {
  if (!fs.existsSync(dir)) throw new UnusableFolderError(`${dir}: folder not found`, 'not_found');
  if (!fs.statSync(dir).isDirectory()) throw new UnusableFolderError(`${dir}: not a folder`);
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  if (has(ADAPTER_CONFIG)) {
    const adapter = readAdapterConfig(dir);
    const base = adapter.baseModel;
    if (!base || !fs.existsSync(base)) throw new UnusableFolderError(`${dir}: the adapter's base model ${base ?? '(not named)'} is not on this machine`);
    const { kind, config } = readModelFolder(base);
    if (kind !== 'float') {
      throw new UnusableFolderError(
        `${dir}: the adapter's base model ${base} is ${kind === 'quantized' ? 'quantized' : 'itself an adapter'}; a LoRA adapter applies to a float model`,
      );
    }
    return { dir, kind: 'adapter', modelDir: base, tokenizerDir: hasTokenizer(dir) ? dir : base, config, configJson: null, quantization: null, adapter };
  }
  if (!has('config.json')) throw new UnusableFolderError(`${dir}: not a model folder (no config.json or ${ADAPTER_CONFIG})`);
  const configJson = readConfigJson(dir);
  const file = path.join(dir, 'config.json');
  const config = configFromHf(configJson, file);
  const quantization = configJson.quantization === undefined ? null : parseQuantizationBlock(configJson.quantization, config, file);
  return { dir, kind: quantization ? 'quantized' : 'float', modelDir: dir, tokenizerDir: dir, config, configJson, quantization, adapter: null };
}
