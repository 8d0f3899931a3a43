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
  datasets: z.array(Entry),
  evalTexts: z.array(Entry),
});
export type ResourceEntry = z.infer<typeof Entry>;
export type ResourceIndex = z.infer<typeof Index>;

/** The bundled resources with absolute paths (entries whose files are missing are left out). */
export function bundledResources(root = RESOURCES): ResourceIndex {
  const file = path.join(root, 'index.json');
  if (!fs.existsSync(file)) return { defaultModel: null, datasets: [], evalTexts: [] };
  const index = Index.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
  const abs = (e: ResourceEntry) => ({ ...e, path: path.join(root, e.path) });
  const present = (e: ResourceEntry) => fs.existsSync(e.path);
  const model = index.defaultModel ? abs(index.defaultModel) : null;
  return {
    defaultModel: model && present(model) ? model : null,
    datasets: index.datasets.map(abs).filter(present),
    evalTexts: index.evalTexts.map(abs).filter(present),
  };
}

/**
 * First run: a store without any model gets the bundled default model, so a
 * newcomer can chat, fine-tune, quantize and inspect at once. Returns its id.
 */
export function ensureDefaultModel(store: Store, root = RESOURCES): number | null {
  const model = bundledResources(root).defaultModel;
  if (!model || store.models.list().length > 0) return null;
  const folder = readModelFolder(model.path);
  const { format } = checkModelFolder(folder);
  return store.models.add({
    name: model.name,
    source: 'imported',
    format,
    path: model.path,
    config: folder.configJson ?? undefined,
    paramCount: countParams(folder.config).total,
    bytes: fs.readdirSync(model.path).reduce((n, f) => n + fs.statSync(path.join(model.path, f)).size, 0),
  }).id;
}
