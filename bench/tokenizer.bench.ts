// Our tokenizer against @huggingface/tokenizers (npm) as the encoder behind
// it, side by side in one run: encode of resources/eval/held-out.txt and of a
// long text (it 8 times), taking turns, median of 7 timed runs after a warm-up,
// for the default model's tokenizer.json and Meta's tokenizer (its
// tokenizer.model, which ours reads in sentencepiece's score mode, and our
// tokenizer.json of it, rank mode), where ../shared/reference has it. The
// npm tokenizer is given our tokenizer.json without its added tokens, so that
// literal "<s>" is text as in our encode(); a golden row counts the golden
// sentencepiece cases (Meta's) each encoder gets right.
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { loadTokenizer, tokenizerFromJson, tokenizerToJson, type Tokenizer } from '../engine/tokenizer/tokenizer';
import { spread, timeRuns } from './harness';
import type { Suite } from './suites';

const ROOT = path.resolve(import.meta.dirname, '..');
const META = path.resolve(ROOT, '../shared/reference/mobilellm-tokenizer');
const RUNS = 7;

type Encode = (text: string) => number[];

/** @huggingface/tokenizers on our tokenizer.json, special tokens not parsed out of the text. */
function npmEncoder(t: Tokenizer): Encode {
  const json = tokenizerToJson(t) as Record<string, unknown>;
  const npm = new HfTokenizer({ ...json, added_tokens: [] }, { clean_up_tokenization_spaces: false });
  return (text) => npm.encode(text, { add_special_tokens: false }).ids;
}

export const suite: Suite = {
  name: 'tokenizer',
  async run(emit) {
    const heldOut = fs.readFileSync(path.join(ROOT, 'resources/eval/held-out.txt'), 'utf8');
    const texts = { 'held-out': heldOut, long: heldOut.repeat(8) };
    const tokenizers: Array<[string, Tokenizer]> = [['default-model tokenizer.json', loadTokenizer(path.join(ROOT, 'resources/default-model'))]];
    if (fs.existsSync(path.join(META, 'tokenizer.model'))) {
      const sp = loadTokenizer(META);
      tokenizers.push(["Meta's tokenizer.json", tokenizerFromJson(tokenizerToJson(sp))], ["Meta's tokenizer.model", sp]);
    }
    const golden = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/tokenizer/cases.json'), 'utf8')) as { text: string; ids: number[] }[];
    for (const [name, t] of tokenizers) {
      const encoders: Record<string, Encode> = { ours: (text) => t.encode(text), '@huggingface/tokenizers': npmEncoder(t) };
      for (const [textName, text] of Object.entries(texts)) {
        const ms: Record<string, number[]> = Object.fromEntries(Object.keys(encoders).map((k) => [k, []]));
        for (let r = 0; r < RUNS; r++)
          for (const [k, encode] of Object.entries(encoders)) ms[k].push(...(await timeRuns(() => encode(text), 1, r === 0 ? 1 : 0)));
        const tokens = t.encode(text).length;
        for (const [k, encode] of Object.entries(encoders)) {
          const s = spread(ms[k]);
          const same = JSON.stringify(encode(text)) === JSON.stringify(t.encode(text));
          emit({ what: 'tokenize', backend: k, shape: `${name}, ${textName} (${text.length} chars, ${tokens} tokens)`, ...s, unit: 'ms', ids_as_ours: same });
        }
      }
      if (name.startsWith('Meta')) {
        for (const [k, encode] of Object.entries(encoders)) {
          const passed = golden.filter((c) => JSON.stringify(encode(c.text)) === JSON.stringify(c.ids)).length;
          emit({ what: 'tokenizer_golden', backend: k, shape: `${name}, ${golden.length} sentencepiece cases`, median: passed, unit: 'cases passed' });
        }
      }
    }
  },
};
