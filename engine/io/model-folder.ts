// The model folders the workbench works with, whatever their kind: a plain or
// quantized model, or a PEFT LoRA adapter that names its base model. These
// functions say where such a folder's architecture and tokenizer are, and
// open it for generation (on the fastest runtime) or scoring.
import fs from 'node:fs';
import path from 'node:path';
import type { MobileLLM } from '../model/model';
import { loadModel } from './checkpoint';
import type { InferenceRuntime } from '../runtime/runtime';
import { createRuntime, openRuntime, type RuntimeOptions } from '../runtime/select';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { ADAPTER_CONFIG, loadAdapter, readAdapterConfig } from '../train/lora';
import { loadChatTemplate, type ChatTemplate } from '../chat/template';

export interface InferenceModel {
  runtime: InferenceRuntime;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** The base model's folder, for an adapter; else the folder itself. */
  baseDir: string;
  /** Why faster runtimes were skipped, one line each. */
  skipped: string[];
}

/** A PEFT LoRA adapter folder (adapter_config.json) rather than a model. */
export const isAdapterFolder = (dir: string): boolean => fs.existsSync(path.join(dir, ADAPTER_CONFIG));

/** An adapter's base model folder; throws when it is not on this machine. */
function adapterBase(dir: string): string {
  const base = readAdapterConfig(dir).baseModel;
  if (!base || !fs.existsSync(base)) throw new Error(`${dir}: the adapter's base model ${base ?? '(not named)'} is not on this machine`);
  return base;
}

/** The adapter folder when it carries its own tokenizer files, else the base model's. */
function fileHolder(adapterDir: string, baseDir: string): string {
  return ['tokenizer.model', 'tokenizer.json'].some((f) => fs.existsSync(path.join(adapterDir, f))) ? adapterDir : baseDir;
}

/** The folder with the model's config.json (the base model's, for an adapter). */
export function architectureFolder(dir: string): string {
  return isAdapterFolder(dir) ? adapterBase(dir) : dir;
}

/** The folder holding a model's tokenizer and chat template (the base model's, for an adapter without its own). */
export function tokenizerFolder(dir: string): string {
  if (!isAdapterFolder(dir)) return dir;
  const base = readAdapterConfig(dir).baseModel;
  return base ? fileHolder(dir, base) : dir;
}

const templateFor = (dir: string, tok: Tokenizer): ChatTemplate => loadChatTemplate(dir, tok.idToPiece(tok.bosId), tok.idToPiece(tok.eosId));

/**
 * Opens a model folder for generation on the fastest runtime that starts
 * (runtime/select.ts: ONNX Runtime, else TensorFlow.js). A quantized model
 * runs on integer kernels; an adapter is merged into its base model first.
 */
export async function openInferenceModel(dir: string, opts: RuntimeOptions = {}): Promise<InferenceModel> {
  const adapter = isAdapterFolder(dir);
  const baseDir = adapter ? adapterBase(dir) : dir;
  const tokDir = adapter ? fileHolder(dir, baseDir) : dir;
  const tokenizer = loadTokenizer(tokDir);
  const template = templateFor(tokDir, tokenizer);
  const { runtime, skipped } = adapter ? await createRuntime(loadMergedModel(dir).model, opts) : await openRuntime(dir, opts);
  return { runtime, tokenizer, template, baseDir, skipped };
}

/** Loads a model folder as plain weights: an adapter is merged into its base model (W + s·A·B). */
export function loadMergedModel(dir: string): { model: MobileLLM; format: string } {
  if (!isAdapterFolder(dir)) return loadModel(dir);
  const { model } = loadModel(adapterBase(dir));
  try {
    loadAdapter(model, dir).merge();
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, format: 'peft-lora' };
}
