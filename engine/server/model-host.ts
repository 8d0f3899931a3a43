// The model the chat window talks to: loaded on first use, kept while it is
// used, replaced (and its memory freed) when another model is picked.
import type { MobileLLM } from '../model/model';
import { loadModel } from '../io/checkpoint';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';

export interface LoadedChatModel {
  modelId: number;
  name: string;
  dir: string;
  model: MobileLLM;
  tokenizer: Tokenizer;
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
    const tokenizer = loadTokenizer(dir);
    const { model } = loadModel(dir);
    this.current = { modelId, name, dir, model, tokenizer };
    return this.current;
  }

  unload(): void {
    this.current?.model.dispose();
    this.current = null;
  }
}
