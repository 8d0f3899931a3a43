// The tokenizer inside a GGUF file, for llama.cpp's `llama` tokenizer model
// (sentencepiece-style BPE: merge the adjacent pair whose concatenation has the
// highest score, fall back to <0xXX> byte tokens), and the way back to a
// tokenizer.json.
//
//   tokenizer.ggml.model        "llama"
//   tokenizer.ggml.tokens       every piece, by id
//   tokenizer.ggml.scores       merge priority: a tokenizer.model's own scores; from a
//                               tokenizer.json, a piece made by merge rank r scores −r, so
//                               llama.cpp merges in the order of its merges (single
//                               characters, bytes and specials score 0)
//   tokenizer.ggml.token_type   1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
//   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, add_eos_token,
//   tokenizer.ggml.add_space_prefix   whether "▁" is prepended (our normalizer's Prepend)
//   tokenizer.chat_template     the template our chat uses for this folder
//   tokenizer.huggingface.json  our tokenizer.json as it is, so that an import gets it back exactly
//
// A GGUF without tokenizer.huggingface.json (one made elsewhere) gets a
// tokenizer.json rebuilt from tokens and scores the way transformers converts
// a sentencepiece model (mergesFromScores).
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { loadChatTemplate } from '../chat/template';
import { mergesFromScores, pieceToByte, Vocabulary } from '../tokenizer/bpe';
import { parseModelProto, PieceType } from '../tokenizer/sentencepiece-model';
import { tokenizerConfig } from '../tokenizer/hf-files';
import { loadTokenizer, tokenizerFromJson, tokenizerToJson } from '../tokenizer/tokenizer';
import type { GgufFile, GgufValue } from './gguf-file';

const SPACE = '\u2581';

const TokenSetting = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const TokenizerConfig = z.looseObject({
  add_bos_token: z.boolean().nullish(),
  add_eos_token: z.boolean().nullish(),
  pad_token: TokenSetting,
});

const HfTokenizerJson = z.looseObject({
  added_tokens: z.array(z.looseObject({ id: z.number().int(), content: z.string(), special: z.boolean().optional() })).default([]),
  normalizer: z.unknown().optional(),
  pre_tokenizer: z.unknown().optional(),
  model: z.looseObject({
    type: z.literal('BPE'),
    vocab: z.record(z.string(), z.number().int()),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])).default([]),
    unk_token: z.string().nullish(),
    byte_fallback: z.boolean().nullish(),
  }),
});

function readTokenizerConfig(dir: string): z.infer<typeof TokenizerConfig> {
  const file = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(file)) return {};
  const parsed = TokenizerConfig.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`${file}: invalid "${parsed.error.issues[0].path.join('.')}": ${parsed.error.issues[0].message}`);
  return parsed.data;
}

/** Whether the text steps of a tokenizer.json prepend "▁" (a Prepend normalizer or a prepending Metaspace). */
function prependsSpace(step: unknown): boolean {
  if (typeof step !== 'object' || step === null) return false;
  const s = step as Record<string, unknown>;
  if (s.type === 'Sequence') return [...((s.normalizers ?? s.pretokenizers ?? []) as unknown[])].some(prependsSpace);
  if (s.type === 'Prepend') return s.prepend === SPACE;
  if (s.type === 'Metaspace') return s.prepend_scheme !== 'never' && s.add_prefix_space !== false;
  return false;
}

/** The GGUF tokenizer metadata of the tokenizer in `dir`, padded with unused pieces to `vocabSize`. */
export function ggufTokenizerMetadata(dir: string, vocabSize: number): { metadata: [string, GgufValue][]; notes: string[] } {
  const tokenizer = loadTokenizer(dir);
  const json = tokenizerToJson(tokenizer);
  const parsed = HfTokenizerJson.safeParse(json);
  if (!parsed.success)
    throw new Error(`${dir}: the tokenizer cannot be written to GGUF: "${parsed.error.issues[0].path.join('.')}": ${parsed.error.issues[0].message}`);
  const hf = parsed.data;
  const notes: string[] = [];
  const pieces: string[] = [];
  for (const [piece, id] of Object.entries(hf.model.vocab)) pieces[id] = piece;
  for (const t of hf.added_tokens) pieces[t.id] = t.content;
  if (pieces.length > vocabSize) throw new Error(`${dir}: the tokenizer has ${pieces.length} pieces, more than the model's vocab_size ${vocabSize}`);
  const types = pieces.map((p): PieceType => (hf.model.byte_fallback && pieceToByte(p) >= 0 ? PieceType.Byte : PieceType.Normal));
  for (const t of hf.added_tokens) types[t.id] = t.special ? PieceType.Control : PieceType.UserDefined;
  const unkId = tokenizer.unkId;
  types[unkId] = PieceType.Unknown;
  for (let id = 0; id < vocabSize; id++) {
    if (pieces[id] === undefined) {
      pieces[id] = `<unused${id}>`;
      types[id] = PieceType.Unused;
    }
  }
  if (pieces.length > tokenizer.vocabSize) notes.push(`the tokenizer's ${tokenizer.vocabSize} pieces are padded to vocab_size ${vocabSize} with unused pieces`);

  const idOf = new Map(pieces.map((p, id) => [p, id]));
  const scores = new Float32Array(vocabSize);
  const merged = new Set<number>();
  hf.model.merges.forEach((m, rank) => {
    const [left, right] = typeof m === 'string' ? m.split(' ') : m;
    const id = idOf.get(left + right);
    if (id !== undefined && !merged.has(id)) {
      merged.add(id);
      scores[id] = -rank;
    }
  });
  // A multi-character piece no merge makes is never produced by our tokenizer; llama.cpp merges it last.
  pieces.forEach((p, id) => {
    if (types[id] === PieceType.Normal && [...p].length > 1 && !merged.has(id)) scores[id] = -1e9;
  });
  let addPrefix = prependsSpace(hf.normalizer) || prependsSpace(hf.pre_tokenizer);
  let removeExtraWhitespaces = false;
  // A sentencepiece model carries its own scores and types: llama.cpp's tokenizer is a port of its BPE.
  const spm = path.join(dir, 'tokenizer.model');
  if (fs.existsSync(spm)) {
    const proto = parseModelProto(fs.readFileSync(spm));
    proto.pieces.forEach((piece, id) => {
      scores[id] = piece.score;
      types[id] = piece.type;
    });
    addPrefix = proto.normalizerSpec.addDummyPrefix;
    removeExtraWhitespaces = proto.normalizerSpec.removeExtraWhitespaces;
    if (removeExtraWhitespaces)
      notes.push("tokenizer.model removes extra whitespace, which llama.cpp's llama tokenizer does not: text with runs of spaces tokenizes differently there");
  }

  const config = readTokenizerConfig(dir);
  const padPiece = typeof config.pad_token === 'string' ? config.pad_token : config.pad_token?.content;
  const padId = padPiece === undefined ? undefined : idOf.get(padPiece);
  const template = loadChatTemplate(dir, tokenizer.idToPiece(tokenizer.bosId), tokenizer.idToPiece(tokenizer.eosId));
  const metadata: [string, GgufValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: pieces }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: Array.from(scores) }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: tokenizer.bosId }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: tokenizer.eosId }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: unkId }],
    ...(padId === undefined ? [] : ([['tokenizer.ggml.padding_token_id', { type: 'u32', value: padId }]] as [string, GgufValue][])),
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: config.add_bos_token ?? true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: config.add_eos_token ?? false }],
    ['tokenizer.ggml.add_space_prefix', { type: 'bool', value: addPrefix }],
    ['tokenizer.ggml.remove_extra_whitespaces', { type: 'bool', value: removeExtraWhitespaces }],
    ['tokenizer.chat_template', { type: 'string', value: template.source }],
    ['tokenizer.huggingface.json', { type: 'string', value: JSON.stringify(json) }],
  ];
  if (padId === undefined) notes.push('no padding token: the tokenizer names none');
  return { metadata, notes };
}

/** tokenizer.json and tokenizer_config.json for the tokenizer of a GGUF file (llama tokenizer model only). */
export function tokenizerFilesFromGguf(gguf: GgufFile): Record<string, string> {
  const model = gguf.scalar('tokenizer.ggml.model');
  if (model !== 'llama')
    throw new Error(`${gguf.path}: tokenizer.ggml.model is ${JSON.stringify(model)}; only "llama" (sentencepiece BPE) tokenizers can be imported`);
  const pieces = (gguf.array('tokenizer.ggml.tokens') ?? []).map(String);
  if (pieces.length === 0) throw new Error(`${gguf.path}: no tokenizer.ggml.tokens`);
  const id = (key: string): number | undefined => {
    const v = gguf.scalar(key);
    return v === undefined ? undefined : Number(v);
  };
  const bos = id('tokenizer.ggml.bos_token_id') ?? 1;
  const eos = id('tokenizer.ggml.eos_token_id') ?? 2;
  const unk = id('tokenizer.ggml.unknown_token_id') ?? 0;
  const pad = id('tokenizer.ggml.padding_token_id');
  const template = gguf.scalar('tokenizer.chat_template');
  const embedded = gguf.scalar('tokenizer.huggingface.json');
  let json: unknown;
  if (typeof embedded === 'string') {
    json = JSON.parse(embedded);
  } else {
    const types = (gguf.array('tokenizer.ggml.token_type') ?? pieces.map(() => PieceType.Normal)).map(Number) as PieceType[];
    const scores = (gguf.array('tokenizer.ggml.scores') ?? pieces.map(() => 0)).map(Number);
    const vocab = new Vocabulary(pieces, types);
    const prefix = gguf.scalar('tokenizer.ggml.add_space_prefix') ?? true;
    json = {
      version: '1.0',
      added_tokens: pieces.flatMap((p, i) =>
        types[i] === PieceType.Control || types[i] === PieceType.Unknown || types[i] === PieceType.UserDefined
          ? [{ id: i, content: p, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] !== PieceType.UserDefined }]
          : [],
      ),
      normalizer: {
        type: 'Sequence',
        normalizers: [...(prefix ? [{ type: 'Prepend', prepend: SPACE }] : []), { type: 'Replace', pattern: { String: ' ' }, content: SPACE }],
      },
      pre_tokenizer: null,
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: pieces[bos], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: pieces[bos], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [pieces[bos]]: { id: pieces[bos], ids: [bos], tokens: [pieces[bos]] } },
      },
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: pieces[unk],
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: types.includes(PieceType.Byte),
        ignore_merges: false,
        vocab: Object.fromEntries(pieces.map((p, i) => [p, i])),
        merges: mergesFromScores(vocab, scores).map(([l, r]) => [l, r]),
      },
    };
  }
  const tokenizer = tokenizerFromJson(json, `${gguf.path} (its tokenizer)`); // refuses what our tokenizer cannot read, naming the file
  const config = {
    ...tokenizerConfig(tokenizer),
    bos_token: pieces[bos],
    eos_token: pieces[eos],
    unk_token: pieces[unk],
    ...(pad === undefined ? {} : { pad_token: pieces[pad] }),
    add_bos_token: gguf.scalar('tokenizer.ggml.add_bos_token') ?? true,
    add_eos_token: gguf.scalar('tokenizer.ggml.add_eos_token') ?? false,
    ...(typeof template === 'string' ? { chat_template: template } : {}),
  };
  return { 'tokenizer.json': JSON.stringify(json, null, 2) + '\n', 'tokenizer_config.json': JSON.stringify(config, null, 2) + '\n' };
}
