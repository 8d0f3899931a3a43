// The tokenizer files a folder we write carries, laid out so that Hugging
// Face's clients — transformers' AutoTokenizer, the `tokenizers` library,
// @huggingface/tokenizers and transformers.js — tokenize as we do:
//  - tokenizer.json is always the tokenizer our engine uses (converted from
//    tokenizer.model when that is what the folder has), so the files cannot
//    disagree with each other;
//  - tokenizer_config.json names `PreTrainedTokenizerFast`: transformers 5
//    then uses tokenizer.json as it is (TokenizersBackend), where
//    `LlamaTokenizer` would rebuild it with a Metaspace pre-tokenizer that
//    drops the space of text starting with one;
//  - `clean_up_tokenization_spaces: false`: the JS clients' decode default is
//    true, which would eat the space before punctuation;
//  - `split_special_tokens: false` (the HF default, written to say it is
//    deliberate): literal "<s>", "</s>", "<unk>" in text become their special
//    ids in every HF client, as our chat encoding does with rendered chat
//    templates (engine/chat/template.ts). Our plain encode() keeps
//    sentencepiece's rule (such text is ordinary characters); README
//    "Tokenizers in exported folders" says how to get that in Python.
import fs from 'node:fs';
import path from 'node:path';
import { hasTokenizer, loadTokenizer, tokenizerToJson, type Tokenizer } from './tokenizer';

/** The tokenizer_config.json keys we set; a source's other keys (chat_template, pad_token, …) are kept. */
export function tokenizerConfig(t: Tokenizer, modelMaxLength?: number): Record<string, unknown> {
  const piece = (id: number): string | undefined => (id >= 0 ? t.idToPiece(id) : undefined);
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: piece(t.bosId),
    eos_token: piece(t.eosId),
    unk_token: piece(t.unkId),
    add_bos_token: t.bosId >= 0,
    add_eos_token: false,
    split_special_tokens: false,
    clean_up_tokenization_spaces: false,
    ...(modelMaxLength === undefined ? {} : { model_max_length: modelMaxLength }),
  };
}

/**
 * Keys of a source tokenizer_config.json that would make transformers build a
 * tokenizer other than tokenizer.json: the slow sentencepiece class's
 * settings, another tokenizer file, remote tokenizer code.
 */
const OTHER_TOKENIZER_KEYS = [
  'legacy',
  'sp_model_kwargs',
  'add_prefix_space',
  'use_default_system_prompt',
  'added_tokens_decoder',
  'tokenizer_file',
  'auto_map',
];

function readJson(file: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`, { cause: e });
  }
}

/**
 * The tokenizer files for a folder whose tokenizer is read from
 * `tokenizerDir`, by file name: tokenizer.json and tokenizer_config.json
 * always, and the source's tokenizer.model, special_tokens_map.json and
 * chat_template.jinja as they are when it has them; none when the folder has no tokenizer.
 */
export function hfTokenizerFiles(tokenizerDir: string): Record<string, string | Buffer> {
  if (!hasTokenizer(tokenizerDir)) return {};
  const t = loadTokenizer(tokenizerDir);
  const configFile = path.join(tokenizerDir, 'tokenizer_config.json');
  const source = fs.existsSync(configFile) ? readJson(configFile) : {};
  for (const key of OTHER_TOKENIZER_KEYS) delete source[key];
  const maxLength = typeof source.model_max_length === 'number' && source.model_max_length < 1e12 ? source.model_max_length : undefined;
  delete source.model_max_length;
  const config = { ...source, ...tokenizerConfig(t, maxLength) };
  const files: Record<string, string | Buffer> = {
    'tokenizer.json': JSON.stringify(tokenizerToJson(t)) + '\n',
    'tokenizer_config.json': JSON.stringify(config, null, 2) + '\n',
  };
  for (const name of ['tokenizer.model', 'special_tokens_map.json', 'chat_template.jinja']) {
    const file = path.join(tokenizerDir, name);
    if (fs.existsSync(file)) files[name] = fs.readFileSync(file);
  }
  return files;
}
