// Writes the tokenizer folders test/python/check_tokenizers.py loads, for
// sending to the GPU machine (it has no node):
//   npx tsx test/python/make-tokenizer-exports.ts tmp/tokenizer-exports
// One folder per tokenizer of test/helpers/tokenizer-exports.ts (Meta's only
// where ../shared/reference has it: tmp/ is not committed, so neither is its
// conversion), default-model-llama-config/ (the default model's files beside
// a config.json of model_type llama, as our hf exports have: AutoTokenizer
// takes another branch then), texts.json (the golden texts) and our-ids.json
// (our ids for each text, by folder, for the decode check).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTokenizer } from '../../engine/tokenizer/tokenizer';
import { exportTokenizers, goldenCases, writeTokenizerSources } from '../helpers/tokenizer-exports';

const out = process.argv[2];
if (!out) throw new Error('usage: make-tokenizer-exports.ts <output folder>');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-tokenizer-sources-'));
try {
  const sources = writeTokenizerSources(scratch);
  fs.rmSync(out, { recursive: true, force: true });
  exportTokenizers(sources, out);
  const withConfig = path.join(out, 'default-model-llama-config');
  fs.cpSync(path.join(out, 'default-model'), withConfig, { recursive: true });
  fs.writeFileSync(path.join(withConfig, 'config.json'), JSON.stringify({ model_type: 'llama', architectures: ['LlamaForCausalLM'] }, null, 2) + '\n');
  const texts = goldenCases().map((c) => c.text);
  fs.writeFileSync(path.join(out, 'texts.json'), JSON.stringify(texts) + '\n');
  const ours = Object.fromEntries(Object.entries(sources).map(([name, dir]) => [name, ((t) => texts.map((text) => t.encode(text)))(loadTokenizer(dir))]));
  fs.writeFileSync(path.join(out, 'our-ids.json'), JSON.stringify({ ...ours, 'default-model-llama-config': ours['default-model'] }) + '\n');
  console.log(`${out}: ${Object.keys(sources).join(', ')}, default-model-llama-config; ${texts.length} texts`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
