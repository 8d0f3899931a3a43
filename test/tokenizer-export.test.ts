// Our exported tokenizer folders (engine/tokenizer/hf-files.ts) in Hugging
// Face's JavaScript clients — @huggingface/tokenizers and transformers.js'
// AutoTokenizer, loaded from the local folder with no network — give our ids
// and our decoded text on every golden tokenizer case, for the default
// model's tokenizer, one our BPE trainer made and Meta's tokenizer.model. The
// one deliberate difference (README "Tokenizers in exported folders"):
// literal "<s>", "</s>", "<unk>" in text are special ids there, as in our chat
// encoding, and ordinary characters in our encode(). An hf export of a model
// with only Meta's tokenizer.model and LlamaTokenizer config gets these files
// too. The Python clients' ids, recorded by test/python/check_tokenizers.py
// on the GPU machine, are compared when
// test/fixtures/python-tokenizers/results.json is there.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportHf } from '../engine/export/hf';
import { hfTokenizerFiles } from '../engine/tokenizer/hf-files';
import { loadTokenizer, type Tokenizer } from '../engine/tokenizer/tokenizer';
import { exportTokenizers, goldenCases, writeTokenizerSources } from './helpers/tokenizer-exports';

const cases = goldenCases();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-tokenizer-export-'));
const out = path.join(scratch, 'exports');
const sources = writeTokenizerSources(scratch);
exportTokenizers(sources, out);
const names = Object.keys(sources);
if (!names.includes('meta')) console.warn("Meta's tokenizer.model not found in ../shared/reference: its export is not checked");
const GOLDEN_DIR = path.resolve(import.meta.dirname, '../../shared/golden');
const PYTHON_RESULTS = path.join(import.meta.dirname, 'fixtures/python-tokenizers/results.json');

const SPECIAL_TEXT = /<s>|<\/s>|<unk>/g;
const hasSpecialText = (text: string): boolean => /<s>|<\/s>|<unk>/.test(text);

/**
 * The ids an HF client gives: special-token text is cut out of the text first
 * and becomes its id; every piece between is encoded on its own (so each gets
 * its own leading "▁"), exactly as our encodeChatText does.
 */
function idsParsingSpecials(t: Tokenizer, text: string): number[] {
  const ids: number[] = [];
  let last = 0;
  for (const m of text.matchAll(SPECIAL_TEXT)) {
    if (m.index > last) ids.push(...t.encode(text.slice(last, m.index)));
    ids.push(t.pieceToId(m[0])!);
    last = m.index + m[0].length;
  }
  if (last < text.length) ids.push(...t.encode(text.slice(last)));
  return ids;
}

/**
 * Our decode as the JS clients' ByteFallback decoder gives it: they decode
 * each run of byte pieces with TextDecoder, which drops a byte order mark
 * that starts the run (the Rust library keeps it, as we do). The one golden
 * case with a BOM has it first, as bytes where the vocabulary lacks it.
 */
function jsDecoded(t: Tokenizer, ids: number[]): string {
  const text = t.decode(ids);
  return text.startsWith('\uFEFF') && t.pieceToId('\uFEFF') === undefined ? text.slice(1) : text;
}

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe.each(names)('the %s tokenizer export', (name) => {
  let ours: Tokenizer;
  let npm: HfTokenizer;
  let js: PreTrainedTokenizer;
  let config: Record<string, unknown>;
  beforeAll(async () => {
    ours = loadTokenizer(sources[name]);
    const dir = path.join(out, name);
    config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    npm = new HfTokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')), config);
    env.allowRemoteModels = false;
    env.localModelPath = out;
    js = await AutoTokenizer.from_pretrained(name);
  });

  it('names the class that uses tokenizer.json as it is, and says how special-token text is read', () => {
    expect(config).toMatchObject({ tokenizer_class: 'PreTrainedTokenizerFast', split_special_tokens: false, clean_up_tokenization_spaces: false });
    expect(config).toMatchObject({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true });
    expect(js.constructor.name).toBe('PreTrainedTokenizer');
  });

  it.each(cases.map((c, i) => ({ ...c, label: `#${i} ${JSON.stringify(c.text).slice(0, 40)}` })))('$label', ({ text }) => {
    const ids = ours.encode(text);
    const expected = hasSpecialText(text) ? idsParsingSpecials(ours, text) : ids;
    expect(npm.encode(text, { add_special_tokens: false }).ids, '@huggingface/tokenizers').toEqual(expected);
    expect(npm.encode(text).ids, '@huggingface/tokenizers with BOS').toEqual([ours.bosId, ...expected]);
    expect(js.encode(text), 'transformers.js AutoTokenizer').toEqual([ours.bosId, ...expected]);
    if (ids.length === 0) return;
    expect(npm.decode(ids), '@huggingface/tokenizers decode').toBe(jsDecoded(ours, ids));
    expect(js.decode([ours.bosId, ...ids, ours.eosId], { skip_special_tokens: true }), 'transformers.js decode').toBe(jsDecoded(ours, ids));
  });

  it('differs from our encode() only where the text holds special-token text', () => {
    const differing = cases.filter((c) => JSON.stringify(npm.encode(c.text, { add_special_tokens: false }).ids) !== JSON.stringify(ours.encode(c.text)));
    expect(differing.map((c) => c.text)).toEqual(cases.filter((c) => hasSpecialText(c.text)).map((c) => c.text));
    expect(differing.length).toBeGreaterThan(0);
  });
});

const hasRealVocabModel = names.includes('meta') && fs.existsSync(path.join(GOLDEN_DIR, 'tiny-realvocab'));

describe.skipIf(!hasRealVocabModel)("an hf export of a model with Meta's tokenizer.model and its LlamaTokenizer config", () => {
  const model = path.join(scratch, 'realvocab-model');
  const exported = path.join(scratch, 'hf-export', 'realvocab');
  beforeAll(async () => {
    fs.mkdirSync(model, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(GOLDEN_DIR, 'tiny-realvocab', f), path.join(model, f));
    for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) fs.copyFileSync(path.join(sources.meta, f), path.join(model, f));
    await exportHf(model, exported);
  });

  it('carries our tokenizer.json beside tokenizer.model, and a config without the slow class keys', () => {
    const written = hfTokenizerFiles(model);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'tokenizer.model', 'special_tokens_map.json']) {
      expect(fs.readFileSync(path.join(exported, f)).equals(Buffer.from(written[f])), f).toBe(true);
    }
    const config = JSON.parse(fs.readFileSync(path.join(exported, 'tokenizer_config.json'), 'utf8'));
    expect(config.tokenizer_class).toBe('PreTrainedTokenizerFast');
    for (const key of ['legacy', 'sp_model_kwargs', 'added_tokens_decoder']) expect(config, key).not.toHaveProperty(key);
  });

  it('transformers.js AutoTokenizer reads it beside config.json (model_type llama) with our ids', async () => {
    env.allowRemoteModels = false;
    env.localModelPath = path.dirname(exported);
    const js = await AutoTokenizer.from_pretrained(path.basename(exported));
    const ours = loadTokenizer(model);
    for (const c of cases) expect(js.encode(c.text), c.text).toEqual([ours.bosId, ...(hasSpecialText(c.text) ? idsParsingSpecials(ours, c.text) : c.ids)]);
  });
});

interface PythonFolder {
  sha256: Record<string, string>;
  tokenizer_class: string;
  /** AutoTokenizer(text)["input_ids"], then loaded with split_special_tokens=True. */
  transformers: number[][];
  transformers_split: number[][];
  /** tokenizers.Tokenizer.from_file(...).encode(text, add_special_tokens=False).ids, then with encode_special_tokens = True. */
  tokenizers: number[][];
  tokenizers_split: number[][];
  /** AutoTokenizer's and the tokenizers library's decode of our ids for each text. */
  decoded: string[];
  tokenizers_decoded: string[];
}
const python = fs.existsSync(PYTHON_RESULTS)
  ? (JSON.parse(fs.readFileSync(PYTHON_RESULTS, 'utf8')) as { versions: Record<string, string>; texts: string[]; folders: Record<string, PythonFolder> })
  : null;
/** The export a recorded folder is: default-model-llama-config holds the default model's files beside a config.json. */
const exportOf = (folder: string): string => folder.replace(/-llama-config$/, '');
/**
 * The bundled default model's folders were recorded on an earlier default model when its tokenizer.json differs from
 * the one recorded: stale until check_tokenizers.py runs again on the GPU machine (every other folder must match).
 */
const staleDefault = (folder: string): boolean =>
  exportOf(folder) === 'default-model' && python!.folders[folder].sha256['tokenizer.json'] !== sha256(path.join(sources['default-model'], 'tokenizer.json'));
const stale = Object.keys(python?.folders ?? {}).filter(staleDefault);
if (stale.length) {
  console.warn(`tokenizer-export: ${stale.join(', ')} recorded on an earlier default model; left out until test/python/check_tokenizers.py runs again`);
}

describe.skipIf(!python)('the Python clients (transformers, tokenizers) on our exports, recorded by test/python/check_tokenizers.py', () => {
  it('recorded the golden texts, for every export', () => {
    expect(python!.texts).toEqual(cases.map((c) => c.text));
    expect(Object.keys(python!.folders).map(exportOf)).toEqual(expect.arrayContaining(names));
  });

  describe.each(Object.keys(python?.folders ?? {}).filter((f) => names.includes(exportOf(f)) && !stale.includes(f)))('%s', (folder) => {
    const rec = (): PythonFolder => python!.folders[folder];
    const name = exportOf(folder);

    it('was recorded from the files we write now', () => {
      for (const [file, hash] of Object.entries(rec().sha256)) {
        expect(sha256(path.join(out, name, file)), `${file} changed since the fixture was recorded: run check_tokenizers.py again`).toBe(hash);
      }
    });

    it('AutoTokenizer uses tokenizer.json as it is; with either special-token setting both clients give our ids, and our decoded text', () => {
      const ours = loadTokenizer(sources[name]);
      expect(rec().tokenizer_class).toBe('TokenizersBackend');
      cases.forEach((c, i) => {
        const ids = ours.encode(c.text);
        const parsed = hasSpecialText(c.text) ? idsParsingSpecials(ours, c.text) : ids;
        expect(rec().transformers[i], `transformers ${c.text}`).toEqual([ours.bosId, ...parsed]);
        expect(rec().transformers_split[i], `transformers split_special_tokens ${c.text}`).toEqual([ours.bosId, ...ids]);
        expect(rec().tokenizers[i], `tokenizers ${c.text}`).toEqual(parsed);
        expect(rec().tokenizers_split[i], `tokenizers encode_special_tokens ${c.text}`).toEqual(ids);
        expect(rec().decoded[i], `transformers decode ${c.text}`).toBe(ours.decode(ids));
        expect(rec().tokenizers_decoded[i], `tokenizers decode ${c.text}`).toBe(ours.decode(ids));
      });
    });
  });
});

afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
