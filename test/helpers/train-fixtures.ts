// Fixtures for the training tests: a tiny character-level tokenizer (with byte
// fallback, ids < 512) that fits the golden tiny models' vocabulary, model
// folders made from a golden case plus that tokenizer, and small datasets.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { goldenDir, type GoldenCase } from './golden';

/** printable ASCII as single pieces, "▁" for spaces; everything else falls back to bytes. */
export function tinyTokenizerJson(): object {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let id = 259;
  vocab['\u2581'] = id++;
  for (let c = 33; c < 127; c++) vocab[String.fromCharCode(c)] = id++;
  const special = (content: string, sid: number) => ({ id: sid, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    added_tokens: [special('<unk>', 0), special('<s>', 1), special('</s>', 2)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '\u2581' },
        { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `mlw-${prefix}-`));
}

/** A model folder: a golden case's config and weights plus the tiny tokenizer (and an optional chat template). */
export function tinyModelDir(parent: string, from: GoldenCase = 'tiny-gqa', chatTemplate?: string): string {
  const dir = path.join(parent, `${from}-model`);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(goldenDir(from), f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
  if (chatTemplate !== undefined) {
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: chatTemplate }));
  }
  return dir;
}

export function writeJsonl(file: string, rows: unknown[]): string {
  fs.writeFileSync(file, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return file;
}

/** n short question/answer chats about arithmetic: learnable patterns for a tiny model. */
export function arithmeticChats(n: number, offset = 0): object[] {
  return Array.from({ length: n }, (_, i) => {
    const a = (i + offset) % 10;
    const b = Math.floor((i + offset) / 10) % 10;
    return {
      messages: [
        { role: 'user', content: `${a}+${b}` },
        { role: 'assistant', content: String(a + b) },
      ],
    };
  });
}
