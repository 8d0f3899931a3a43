// The model folders the workbench works with, whatever their kind: a plain or
// quantized model, or a PEFT LoRA adapter that names its base model. These
// functions say where such a folder's architecture and tokenizer are, and
// load it for generation or scoring.
import fs from 'node:fs';
import path from 'node:path';
import type { MobileLLM } from '../model/model';
import { loadModel } from './checkpoint';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { ADAPTER_CONFIG, loadAdapter, readAdapterConfig } from '../train/lora';
import { loadChatTemplate, type ChatTemplate } from '../chat/template';

export interface InferenceModel {
  model: MobileLLM;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** The folder tokenizer and template came from (the base model's, for an adapter). */
  baseDir: string;
}

const isAdapter = (dir: string): boolean => fs.existsSync(path.join(dir, ADAPTER_CONFIG));

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
  return isAdapter(dir) ? adapterBase(dir) : dir;
}

/** The folder holding a model's tokenizer and chat template (the base model's, for an adapter without its own). */
export function tokenizerFolder(dir: string): string {
  if (!isAdapter(dir)) return dir;
  const base = readAdapterConfig(dir).baseModel;
  return base ? fileHolder(dir, base) : dir;
}

const templateFor = (dir: string, tok: Tokenizer): ChatTemplate => loadChatTemplate(dir, tok.idToPiece(tok.bosId), tok.idToPiece(tok.eosId));

/** Loads a model folder for generation; an adapter folder loads its base model with the adapter applied. */
export function loadInferenceModel(dir: string): InferenceModel {
  if (isAdapter(dir)) {
    const base = adapterBase(dir);
    const tokenizer = loadTokenizer(fileHolder(dir, base));
    const template = templateFor(fileHolder(dir, base), tokenizer);
    const { model } = loadModel(base);
    loadAdapter(model, dir);
    return { model, tokenizer, template, baseDir: base };
  }
  const tokenizer = loadTokenizer(dir);
  const template = templateFor(dir, tokenizer);
  const { model } = loadModel(dir);
  return { model, tokenizer, template, baseDir: dir };
}

/** Loads a model folder as plain weights: an adapter is merged into its base model (W + s·A·B). */
export function loadMergedModel(dir: string): { model: MobileLLM; format: string } {
  if (!isAdapter(dir)) return loadModel(dir);
  const { model } = loadModel(adapterBase(dir));
  try {
    loadAdapter(model, dir).merge();
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, format: 'peft-lora' };
}
