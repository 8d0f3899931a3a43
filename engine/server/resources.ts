// What the app ships in resources/: the default model, sample datasets and
// evaluation texts, described by resources/index.json.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Store } from '../store/store';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { countParams } from '../model/config';

export const RESOURCES = path.resolve(import.meta.dirname, '../../resources');

const Entry = z.object({
  name: z.string(),
  path: z.string(),
  description: z.string(),
  /** A model's tokens per training sequence, when shorter than its config's max_position_embeddings. */
  trainedContext: z.number().int().positive().optional(),
});
const Index = z.object({
  defaultModel: Entry.nullable(),
  /** The default model tuned to chat on the sample dataset: a LoRA adapter whose base_model_name_or_path names the default model's folder beside it. */
  chatModel: Entry.nullable().default(null),
  datasets: z.array(Entry),
  evalTexts: z.array(Entry),
});
export type ResourceEntry = z.infer<typeof Entry>;
export type ResourceIndex = z.infer<typeof Index>;

/** The bundled resources with absolute paths (entries whose files are missing are left out). */
export function bundledResources(root = RESOURCES): ResourceIndex {
  const file = path.join(root, 'index.json');
  if (!fs.existsSync(file)) return { defaultModel: null, chatModel: null, datasets: [], evalTexts: [] };
  const index = Index.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
  const abs = (e: ResourceEntry) => ({ ...e, path: path.join(root, e.path) });
  const present = (e: ResourceEntry) => fs.existsSync(e.path);
  const model = index.defaultModel ? abs(index.defaultModel) : null;
  const chat = index.chatModel ? abs(index.chatModel) : null;
  const defaultModel = model && present(model) ? model : null;
  return {
    defaultModel,
    chatModel: defaultModel && chat && present(chat) ? chat : null,
    datasets: index.datasets.map(abs).filter(present),
    evalTexts: index.evalTexts.map(abs).filter(present),
  };
}

/** Whether `dir` is one of the bundled models (the default model or its chat variant). */
export function isBundledModel(dir: string, resources: ResourceIndex = bundledResources()): boolean {
  return [resources.defaultModel, resources.chatModel].some((e) => e !== null && path.resolve(e.path) === path.resolve(dir));
}

/**
 * First run: a store without any model gets the bundled default model (and
 * its chat variant, as an adapter of it), so a newcomer can chat, fine-tune,
 * quantize and inspect at once. Returns the default model's id.
 */
export function ensureDefaultModel(store: Store, root = RESOURCES): number | null {
  const { defaultModel: model, chatModel: chat } = bundledResources(root);
  if (!model || store.models.list().length > 0) return null;
  const record = (e: ResourceEntry, parentModelId: number | null, paramCount: number) => {
    const folder = readModelFolder(e.path);
    const { format } = checkModelFolder(folder);
    return store.models.add({
      name: e.name,
      source: 'imported',
      format,
      path: e.path,
      config: folder.configJson ?? undefined,
      paramCount,
      parentModelId,
      bytes: fs.readdirSync(e.path).reduce((n, f) => n + fs.statSync(path.join(e.path, f)).size, 0),
    }).id;
  };
  const paramCount = countParams(readModelFolder(model.path).config).total;
  const id = record(model, null, paramCount);
  if (chat) record(chat, id, paramCount);
  return id;
}
