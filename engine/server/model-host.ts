// The model the chat window talks to: loaded on first use, kept while it is
// used, replaced (and its memory freed) when another model is picked. Any
// model folder the workbench makes can be loaded: a plain or quantized model,
// or a PEFT LoRA adapter (applied to its base model).
import fs from 'node:fs';
import path from 'node:path';
import type { MobileLLM } from '../model/model';
import { loadModel } from '../io/checkpoint';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { ADAPTER_CONFIG, loadAdapter, readAdapterConfig } from '../train/lora';
import { modelTemplate, type ChatTemplate } from '../chat/template';

export interface InferenceModel {
  model: MobileLLM;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** The folder tokenizer and template came from (the base model's, for an adapter). */
  baseDir: string;
}

/** Loads a model folder for generation; an adapter folder loads its base model with the adapter applied. */
export function loadInferenceModel(dir: string): InferenceModel {
  if (fs.existsSync(path.join(dir, ADAPTER_CONFIG))) {
    const base = readAdapterConfig(dir).baseModel;
    if (!base || !fs.existsSync(base)) throw new Error(`${dir}: the adapter's base model ${base ?? '(not named)'} is not on this machine`);
    const tokenizer = loadTokenizer(fileHolder(dir, base));
    const { model } = loadModel(base);
    loadAdapter(model, dir);
    return { model, tokenizer, template: modelTemplate(fileHolder(dir, base)), baseDir: base };
  }
  const tokenizer = loadTokenizer(dir);
  const { model } = loadModel(dir);
  return { model, tokenizer, template: modelTemplate(dir), baseDir: dir };
}

/** The folder holding a model's tokenizer and chat template (the base model's, for an adapter without its own). */
export function tokenizerFolder(dir: string): string {
  if (!fs.existsSync(path.join(dir, ADAPTER_CONFIG))) return dir;
  const base = readAdapterConfig(dir).baseModel;
  return base ? fileHolder(dir, base) : dir;
}

/** The adapter folder when it carries its own tokenizer files, else the base model's. */
function fileHolder(adapterDir: string, baseDir: string): string {
  return ['tokenizer.model', 'tokenizer.json'].some((f) => fs.existsSync(path.join(adapterDir, f))) ? adapterDir : baseDir;
}

export interface LoadedChatModel extends InferenceModel {
  modelId: number;
  name: string;
  dir: string;
}

export class ModelHost {
  private current: LoadedChatModel | null = null;

  get loaded(): LoadedChatModel | null {
    return this.current;
  }

  /** The model at `dir`, loading it (and unloading another) if needed. */
  use(modelId: number, name: string, dir: string): LoadedChatModel {
    if (this.current?.modelId === modelId && this.current.dir === dir) return this.current;
    this.unload();
    this.current = { modelId, name, dir, ...loadInferenceModel(dir) };
    return this.current;
  }

  unload(): void {
    this.current?.model.dispose();
    this.current = null;
  }
}
