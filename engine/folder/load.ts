// A model folder's weights: checked without loading them, or loaded into a
// MobileLLM on TensorFlow.js. Float weights load through engine/io's
// checkpoint reader, quantized ones through engine/quant (integer codes stay
// integer), and an adapter is merged into its base model (W + s·A·B).
import fs from 'node:fs';
import path from 'node:path';
import { checkTensorNames, loadModel, openWeights, type CheckpointFormat, type LoadOptions } from '../io/checkpoint';
import type { DType } from '../io/raw-tensor';
import { SafetensorsFile } from '../io/safetensors';
import type { TensorSource } from '../io/tensor-source';
import type { MobileLLMConfig } from '../model/config';
import type { MobileLLM } from '../model/model';
import { checkQuantizedTensors, isQuantizedTensorName, loadQuantizedModel } from '../quant/checkpoint';
import { ADAPTER_WEIGHTS, loadAdapter } from '../train/lora';
import type { ModelFolder } from './kind';

/** How a folder's weights are stored: one of engine/io's checkpoint layouts, or a PEFT adapter. */
export type FolderFormat = CheckpointFormat | 'peft-lora';

export interface LoadedFolder {
  model: MobileLLM;
  format: FolderFormat;
  /** The dtype the weights were stored in (an adapter's: its base model's). */
  storedDtype: DType;
}

/** Checks a checkpoint's tensor names, shapes and dtypes against the config: quantized ones (engine/quant) or float ones. */
export function checkTensors(source: TensorSource, c: MobileLLMConfig): void {
  if (source.names().some(isQuantizedTensorName)) checkQuantizedTensors(source, c);
  else checkTensorNames(source, c);
}

/** Checks that a folder's weights fit its config, without loading them; returns how they are stored. */
export function checkModelFolder(folder: ModelFolder): { format: FolderFormat; storedDtype: DType } {
  const { source, format } = openWeights(folder.modelDir);
  let storedDtype: DType;
  try {
    checkTensors(source, folder.config);
    storedDtype = source.info(source.names()[0]).dtype;
  } finally {
    source.close();
  }
  if (!folder.adapter) return { format, storedDtype };
  // The adapter's tensors are matched to their layers when it is applied (train/lora.ts: loadAdapter).
  const weights = path.join(folder.dir, ADAPTER_WEIGHTS);
  if (!fs.existsSync(weights)) throw new Error(`${folder.dir}: no ${ADAPTER_WEIGHTS}`);
  SafetensorsFile.open(weights).close();
  return { format: 'peft-lora', storedDtype };
}

/**
 * Loads a folder for inference: float weights, quantized codes, or an adapter
 * merged into its base. `wrap` (training) takes float weights only.
 */
export function loadModelFolder(folder: ModelFolder, opts: LoadOptions = {}): LoadedFolder {
  const { dir } = folder;
  if (folder.kind === 'quantized') return loadQuantizedModel(dir, opts);
  if (folder.kind === 'float') {
    checkModelFolder(folder); // names the problem of a folder holding quantized tensors without their config block
    return loadModel(dir, opts);
  }
  if (opts.wrap) throw new Error(`${dir}: a LoRA adapter; merge it into its base model (mlw merge) to train the merged model`);
  const base = loadModel(folder.modelDir);
  try {
    loadAdapter(base.model, dir).merge();
  } catch (e) {
    base.model.dispose();
    throw e;
  }
  return { model: base.model, format: 'peft-lora', storedDtype: base.storedDtype };
}
