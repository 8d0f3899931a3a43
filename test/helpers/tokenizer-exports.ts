// The tokenizer folders whose exports HF clients must read as we tokenize:
// the bundled default model's, one made by our BPE trainer (on the held-out
// text, so it is the same every time) and Meta's tokenizer.model (from
// ../shared/reference when this checkout has it; never committed). Each
// source folder is written by writeTokenizerSources; exportTokenizers writes
// hfTokenizerFiles of each into a folder of the same name.
import fs from 'node:fs';
import path from 'node:path';
import { hfTokenizerFiles } from '../../engine/tokenizer/hf-files';
import { trainBpe, trainedBpeToJson } from '../../engine/tokenizer/train-bpe';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const META_TOKENIZER_DIR = path.resolve(ROOT, '../shared/reference/mobilellm-tokenizer');
export const GOLDEN_CASES = path.join(ROOT, 'test/fixtures/tokenizer/cases.json');

export interface GoldenCase {
  text: string;
  ids: number[];
  decoded: string;
}

export const goldenCases = (): GoldenCase[] => JSON.parse(fs.readFileSync(GOLDEN_CASES, 'utf8'));

/** Source folder of each tokenizer, by export name; Meta's only where this checkout has it. */
export function writeTokenizerSources(scratch: string): Record<string, string> {
  const trained = path.join(scratch, 'trained-bpe-source');
  fs.mkdirSync(trained, { recursive: true });
  const text = fs.readFileSync(path.join(ROOT, 'resources/eval/held-out.txt'), 'utf8');
  fs.writeFileSync(path.join(trained, 'tokenizer.json'), JSON.stringify(trainedBpeToJson(trainBpe(text.split('\n\n'), { vocabSize: 1000 }))));
  return {
    'default-model': path.join(ROOT, 'resources/default-model'),
    'trained-bpe': trained,
    ...(fs.existsSync(path.join(META_TOKENIZER_DIR, 'tokenizer.model')) ? { meta: META_TOKENIZER_DIR } : {}),
  };
}

/** Writes each source's exported tokenizer files to out/<name>/. */
export function exportTokenizers(sources: Record<string, string>, out: string): void {
  for (const [name, dir] of Object.entries(sources)) {
    fs.mkdirSync(path.join(out, name), { recursive: true });
    for (const [file, contents] of Object.entries(hfTokenizerFiles(dir))) fs.writeFileSync(path.join(out, name, file), contents);
  }
}
