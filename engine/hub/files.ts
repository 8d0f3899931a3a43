// Which files of a Hub repo make a model folder: config.json, one weights
// layout (safetensors before pytorch .bin; one file before shards, as
// transformers itself prefers), and the tokenizer and generation files.
import { TOKENIZER_FILES } from '../io/checkpoint';
import type { RepoFile } from './api';

type Layout = { single: string } | { index: string; shard: RegExp };

/** Weight layouts in order of preference: one file, or an index and its shards (named as transformers names them). */
const WEIGHT_LAYOUTS: Layout[] = [
  { single: 'model.safetensors' },
  { index: 'model.safetensors.index.json', shard: /^model-\d+-of-\d+\.safetensors$/ },
  { single: 'pytorch_model.bin' },
  { index: 'pytorch_model.bin.index.json', shard: /^pytorch_model-\d+-of-\d+\.bin$/ },
];

function weightFiles(byName: Map<string, RepoFile>): RepoFile[] | null {
  for (const layout of WEIGHT_LAYOUTS) {
    if ('single' in layout) {
      const f = byName.get(layout.single);
      if (f) return [f];
    } else {
      const index = byName.get(layout.index);
      const shards = [...byName.values()].filter((f) => layout.shard.test(f.path));
      if (index && shards.length) return [index, ...shards.sort((a, b) => a.path.localeCompare(b.path))];
    }
  }
  return null;
}

/**
 * The files to download, config.json first (it is checked before the weights
 * are fetched). Only files at the top of the repo count. `where` names the
 * repo in errors.
 */
export function pickModelFiles(files: RepoFile[], where: string): RepoFile[] {
  const byName = new Map(files.filter((f) => !f.path.includes('/')).map((f) => [f.path, f]));
  const config = byName.get('config.json');
  if (!config) throw new Error(`${where} has no config.json: not a transformers model repo`);
  const weights = weightFiles(byName);
  if (!weights) {
    throw new Error(`${where} has no weights (model.safetensors, sharded model-*-of-*.safetensors with their index, or pytorch_model.bin)`);
  }
  const tokenizer = TOKENIZER_FILES.flatMap((name) => byName.get(name) ?? []);
  return [config, ...weights, ...tokenizer];
}
