// The model the chat window talks to: loaded on first use, kept while it is
// used, replaced (and its memory freed) when another model is picked. Any
// model folder the workbench makes can be loaded: a plain or quantized model,
// or a PEFT LoRA adapter (merged into its base model), on the fastest runtime.
import { openInferenceModel, type InferenceModel } from '../folder/inference';

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
  async use(modelId: number, name: string, dir: string): Promise<LoadedChatModel> {
    if (this.current?.modelId === modelId && this.current.dir === dir) return this.current;
    this.unload();
    this.current = { modelId, name, dir, ...(await openInferenceModel(dir)) };
    return this.current;
  }

  unload(): void {
    void this.current?.runtime.dispose();
    this.current = null;
  }
}
