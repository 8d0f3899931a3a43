// What the app ships in resources/: the default model, sample datasets and
// evaluation texts, described by resources/index.json.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const RESOURCES = path.resolve(import.meta.dirname, '../../resources');

const Entry = z.object({ name: z.string(), path: z.string(), description: z.string() });
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
