// The tokenizer MobileLLM uses: LLaMA's sentencepiece BPE with byte fallback,
// loaded from `tokenizer.model` (reproducing sentencepiece exactly) or from an
// HF `tokenizer.json` (reproducing HF tokenizers' merges-rank BPE). Decoding
// follows sentencepiece's rules in both cases.
import fs from 'node:fs';
import path from 'node:path';
import { ModelType, parseModelProto, PieceType, type ModelProto } from './sentencepiece-model';
import { HfBpe, SentencePieceBpe, SPACE_SYMBOL, Vocabulary, mergesFromScores, pieceToByte, type Encoder, type HfTextStep } from './bpe';

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  /** Text → ids. Special-token text like "<s>" is NOT parsed; it is encoded as ordinary characters (sentencepiece behaviour). */
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[];
  /** ids → text, sentencepiece rules: '▁'→' ', the dummy-prefix space of the first piece removed, byte tokens reassembled as UTF-8 (invalid sequences → U+FFFD as sentencepiece does), control tokens (<s>, </s>) skipped, <unk> rendered as " ⁇ " exactly like sentencepiece's decode. */
  decode(ids: number[]): string;
  idToPiece(id: number): string;
  pieceToId(piece: string): number | undefined;
  /** Pieces of encode(text) (sentencepiece encode(out_type=str)). */
  tokenize(text: string): string[];
  /** Incremental detokenizer for streaming generation: push ids one at a time, get only the newly completed text (never emits half a UTF-8 character; handles the leading-space rule). */
  streamDecoder(): { push(id: number): string; flush(): string };
}

interface TokenizerParts {
  vocab: Vocabulary;
  encoder: Encoder;
  bosId: number;
  eosId: number;
  unkId: number;
  /** decode()'s text for the unknown piece (trainer_spec.unk_surface). */
  unkSurface: string;
  /** decode() drops the U+2581 starting the first piece (add_dummy_prefix or remove_extra_whitespaces). */
  stripLeadingSpace: boolean;
  /** With remove_extra_whitespaces, every leading piece loses its U+2581 until text appears. */
  removeExtraWhitespaces: boolean;
  toJson(): object;
}

// ---------------------------------------------------------------------------
// UTF-8 as sentencepiece decodes byte pieces (util.cc DecodeUTF8)

/** Bytes the lead byte announces; 1 for bytes that cannot start a sequence. */
function utf8SequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) === 0xc0) return 2;
  if ((lead & 0xf0) === 0xe0) return 3;
  if ((lead & 0xf8) === 0xf0) return 4;
  return 1;
}

const isTrail = (b: number): boolean => (b & 0xc0) === 0x80;

/**
 * The character at bytes[i] and how many bytes it takes; U+FFFD consuming one
 * byte for anything malformed: a stray or overlong sequence, a surrogate, a
 * value above U+10FFFF, or a sequence cut short by `end`. Each bad byte thus
 * becomes its own U+FFFD (TextDecoder would fold some of them together).
 */
function decodeUtf8Char(bytes: readonly number[], i: number, end: number): [text: string, length: number] {
  const b0 = bytes[i];
  const n = utf8SequenceLength(b0);
  if (n === 1) return [b0 < 0x80 ? String.fromCharCode(b0) : '\uFFFD', 1];
  if (end - i < n) return ['\uFFFD', 1];
  let cp = b0 & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    if (!isTrail(bytes[i + k])) return ['\uFFFD', 1];
    cp = (cp << 6) | (bytes[i + k] & 0x3f);
  }
  const min = n === 2 ? 0x80 : n === 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return ['\uFFFD', 1];
  return [String.fromCodePoint(cp), n];
}

/** Decodes a complete run of byte pieces. */
function decodeByteRun(bytes: readonly number[]): string {
  let text = '';
  for (let i = 0; i < bytes.length;) {
    const [s, n] = decodeUtf8Char(bytes, i, bytes.length);
    text += s;
    i += n;
  }
  return text;
}

// ---------------------------------------------------------------------------

class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  /** Byte value of each byte piece, -1 for other pieces. */
  private readonly byteOf: Int16Array;

  constructor(readonly parts: TokenizerParts) {
    this.vocabSize = parts.vocab.size;
    this.bosId = parts.bosId;
    this.eosId = parts.eosId;
    this.unkId = parts.unkId;
    this.byteOf = Int16Array.from(parts.vocab.pieces, (p, id) => (parts.vocab.types[id] === PieceType.Byte ? pieceToByte(p) : -1));
  }

  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    const ids = this.parts.encoder.encode(text).map((t) => t.id);
    if (opts.bos) ids.unshift(this.special('bos', this.bosId));
    if (opts.eos) ids.push(this.special('eos', this.eosId));
    return ids;
  }

  tokenize(text: string): string[] {
    return this.parts.encoder.encode(text).map((t) => t.piece);
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.parts.vocab.pieces[id];
  }

  pieceToId(piece: string): number | undefined {
    return this.parts.vocab.pieceToId(piece);
  }

  /**
   * SentencePieceProcessor::Decode: runs of byte pieces are decoded together
   * as UTF-8 when a non-byte piece (or the end) closes them; the U+2581 that
   * starts the first piece is dropped as long as no text and no such space
   * has been produced yet (so "▁", "▁hello" decodes to " hello").
   */
  decode(ids: number[]): string {
    let text = '';
    let bytes: number[] = [];
    let atStart = true;
    let leadingSpaceDropped = false;
    for (const id of ids) {
      this.checkId(id);
      if (this.byteOf[id] >= 0) {
        bytes.push(this.byteOf[id]);
        continue;
      }
      text += decodeByteRun(bytes);
      bytes = [];
      if (leadingSpaceDropped || text !== '') atStart = false;
      const [piece, dropped] = this.decodePiece(id, atStart);
      text += piece;
      leadingSpaceDropped = dropped;
    }
    return text + decodeByteRun(bytes);
  }

  /**
   * The same rules one id at a time. Byte pieces are held until the character
   * they start is complete: once a lead byte's sequence length is available,
   * DecodeUTF8 decides exactly as it would on the whole run, so the pieces of
   * the stream always concatenate to decode(ids).
   */
  streamDecoder(): { push(id: number): string; flush(): string } {
    const pending: number[] = [];
    let produced = false;
    let atStart = true;
    let leadingSpaceDropped = false;
    const drain = (runEnded: boolean): string => {
      let text = '';
      let i = 0;
      while (i < pending.length && (runEnded || pending.length - i >= utf8SequenceLength(pending[i]))) {
        const [s, n] = decodeUtf8Char(pending, i, pending.length);
        text += s;
        i += n;
      }
      pending.splice(0, i);
      if (text !== '') produced = true;
      return text;
    };
    return {
      push: (id: number): string => {
        this.checkId(id);
        if (this.byteOf[id] >= 0) {
          pending.push(this.byteOf[id]);
          return drain(false);
        }
        const bytesText = drain(true);
        if (leadingSpaceDropped || produced) atStart = false;
        const [piece, dropped] = this.decodePiece(id, atStart);
        leadingSpaceDropped = dropped;
        if (piece !== '') produced = true;
        return bytesText + piece;
      },
      flush: (): string => drain(true),
    };
  }

  /** Text of one non-byte piece, and whether it dropped the leading space (DecodeSentencePiece). */
  private decodePiece(id: number, atStart: boolean): [text: string, droppedLeadingSpace: boolean] {
    const { vocab, unkSurface, stripLeadingSpace, removeExtraWhitespaces } = this.parts;
    const type = vocab.types[id];
    if (type === PieceType.Control) return ['', false];
    if (type === PieceType.Unknown) return [unkSurface, false];
    let piece = vocab.pieces[id];
    let dropped = false;
    if (atStart && stripLeadingSpace && piece.startsWith(SPACE_SYMBOL)) {
      piece = piece.slice(SPACE_SYMBOL.length);
      // With remove_extra_whitespaces sentencepiece keeps dropping leading spaces.
      dropped = !removeExtraWhitespaces;
    }
    return [piece.replaceAll(SPACE_SYMBOL, ' '), dropped];
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is out of range [0, ${this.vocabSize})`);
    }
  }

  private special(name: string, id: number): number {
    if (id < 0) throw new Error(`this tokenizer defines no ${name} token`);
    return id;
  }
}

function reason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
}

// ---------------------------------------------------------------------------
// tokenizer.model

export function tokenizerFromSentencePiece(bytes: Uint8Array, source = 'tokenizer.model'): Tokenizer {
  try {
    return new BpeTokenizer(sentencePieceParts(parseModelProto(bytes)));
  } catch (e) {
    throw new Error(`${source}: not a usable sentencepiece model: ${reason(e)}`, { cause: e });
  }
}

function sentencePieceParts(model: ModelProto): TokenizerParts {
  const { trainerSpec: trainer, normalizerSpec: normalizer } = model;
  if (trainer.modelType !== ModelType.Bpe) {
    throw new Error(`model_type ${ModelType[trainer.modelType] ?? trainer.modelType} is not supported (only BPE)`);
  }
  for (const spec of [normalizer, model.denormalizerSpec]) {
    if (spec && spec.precompiledCharsmapBytes > 0) {
      throw new Error(`normalization rule "${spec.name}" needs a precompiled charsmap, which is not supported (only "identity")`);
    }
  }
  const encoder = new SentencePieceBpe({
    pieces: model.pieces,
    normalizer,
    treatWhitespaceAsSuffix: trainer.treatWhitespaceAsSuffix,
    byteFallback: trainer.byteFallback,
  });
  const { vocab } = encoder;
  // SentencePieceProcessor::bos_id() and friends: the id of trainer_spec's
  // bos_piece/eos_piece/unk_piece, provided it has the right type; else -1.
  const idOf = (piece: string, type: PieceType): number => {
    const id = vocab.pieceToId(piece);
    return id !== undefined && vocab.types[id] === type ? id : -1;
  };
  return {
    vocab,
    encoder,
    bosId: idOf(trainer.bosPiece, PieceType.Control),
    eosId: idOf(trainer.eosPiece, PieceType.Control),
    unkId: idOf(trainer.unkPiece, PieceType.Unknown),
    unkSurface: trainer.unkSurface,
    stripLeadingSpace: normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces,
    removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
    toJson: () => sentencePieceToHfJson(model, vocab),
  };
}

/**
 * An HF tokenizer.json equivalent to a sentencepiece BPE model, laid out as
 * transformers' LlamaConverter writes it: BPE with byte fallback and merges
 * derived from the scores, normalizer Prepend("▁") + Replace(" ", "▁"), BOS
 * added by the post-processor, decoder Replace + ByteFallback + Fuse + Strip.
 */
function sentencePieceToHfJson(model: ModelProto, vocab: Vocabulary): object {
  const { trainerSpec: trainer, normalizerSpec: normalizer } = model;
  if (normalizer.removeExtraWhitespaces || trainer.treatWhitespaceAsSuffix) {
    throw new Error('remove_extra_whitespaces and treat_whitespace_as_suffix have no tokenizer.json equivalent');
  }
  const unk = model.pieces.find((p) => p.type === PieceType.Unknown);
  const bos = model.pieces.findIndex((p) => p.type === PieceType.Control && p.piece === trainer.bosPiece);
  const replace = (from: string, to: string): object => ({ type: 'Replace', pattern: { String: from }, content: to });
  const normalizers = [
    ...(normalizer.addDummyPrefix ? [{ type: 'Prepend', prepend: SPACE_SYMBOL }] : []),
    ...(normalizer.escapeWhitespaces ? [replace(' ', SPACE_SYMBOL)] : []),
  ];
  const bosStep = (typeId: number): object => ({ SpecialToken: { id: trainer.bosPiece, type_id: typeId } });
  const sequence = (id: string, typeId: number): object => ({ Sequence: { id, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: model.pieces.flatMap((p, id) =>
      p.type === PieceType.Control || p.type === PieceType.Unknown || p.type === PieceType.UserDefined
        ? [{ id, content: p.piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: p.type !== PieceType.UserDefined }]
        : [],
    ),
    normalizer: normalizers.length > 0 ? { type: 'Sequence', normalizers } : null,
    pre_tokenizer: null,
    post_processor:
      bos < 0
        ? null
        : {
            type: 'TemplateProcessing',
            single: [bosStep(0), sequence('A', 0)],
            pair: [bosStep(0), sequence('A', 0), bosStep(1), sequence('B', 1)],
            special_tokens: { [trainer.bosPiece]: { id: trainer.bosPiece, ids: [bos], tokens: [trainer.bosPiece] } },
          },
    decoder: {
      type: 'Sequence',
      decoders: [
        replace(SPACE_SYMBOL, ' '),
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(normalizer.addDummyPrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk?.piece ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: trainer.byteFallback,
      ignore_merges: false,
      vocab: Object.fromEntries(model.pieces.map((p, id) => [p.piece, id])),
      merges: mergesFromScores(
        vocab,
        model.pieces.map((p) => p.score),
      ),
    },
  };
}

// ---------------------------------------------------------------------------
// tokenizer.json

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not an object`);
  return value as Json;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what} is not an array`);
  return value;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what} is not a string`);
  return value;
}

export function tokenizerFromJson(json: unknown, source = 'tokenizer.json'): Tokenizer {
  try {
    return new BpeTokenizer(hfParts(json));
  } catch (e) {
    throw new Error(`${source}: not a usable tokenizer.json: ${reason(e)}`, { cause: e });
  }
}

function hfParts(json: unknown): TokenizerParts {
  const root = object(json, 'the file');
  const model = object(root.model, 'model');
  if (model.type !== 'BPE') throw new Error(`model type ${JSON.stringify(model.type)} is not supported (only BPE)`);
  for (const key of ['dropout', 'continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[key]) throw new Error(`model.${key} is not supported`);
  }

  // id → piece from the vocabulary and the added tokens; ids must be 0…n-1.
  const pieces: string[] = [];
  const place = (piece: string, id: unknown, what: string): void => {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${what} has an invalid id ${JSON.stringify(id)}`);
    const at = id as number;
    if (pieces[at] !== undefined && pieces[at] !== piece) throw new Error(`id ${at} is both ${JSON.stringify(pieces[at])} and ${JSON.stringify(piece)}`);
    pieces[at] = piece;
  };
  for (const [piece, id] of Object.entries(object(model.vocab, 'model.vocab'))) place(piece, id, `vocab entry ${JSON.stringify(piece)}`);
  const added = array(root.added_tokens ?? [], 'added_tokens').map((t, i) => object(t, `added_tokens[${i}]`));
  for (const [i, t] of added.entries()) place(string(t.content, `added_tokens[${i}].content`), t.id, `added_tokens[${i}]`);
  const missing = Array.from(pieces.keys()).find((id) => pieces[id] === undefined);
  if (missing !== undefined) throw new Error(`no token has id ${missing}`);
  if (pieces.length === 0) throw new Error('the vocabulary is empty');

  // Piece types as sentencepiece would have them: special added tokens are
  // control symbols (never parsed from text), other added tokens user-defined.
  const unkToken = string(model.unk_token, 'model.unk_token');
  const unkId = pieces.indexOf(unkToken);
  if (unkId < 0) throw new Error(`unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
  const byteFallback = model.byte_fallback === true;
  const types = pieces.map((p): PieceType => (byteFallback && pieceToByte(p) >= 0 ? PieceType.Byte : PieceType.Normal));
  for (const t of added) types[t.id as number] = t.special === true ? PieceType.Control : PieceType.UserDefined;
  types[unkId] = PieceType.Unknown;
  const vocab = new Vocabulary(pieces, types);

  const merges = array(model.merges ?? [], 'model.merges').map((m, i): [string, string] => {
    const pair = typeof m === 'string' ? m.split(' ') : array(m, `model.merges[${i}]`);
    if (pair.length !== 2) throw new Error(`model.merges[${i}] is not a pair`);
    return [string(pair[0], `model.merges[${i}][0]`), string(pair[1], `model.merges[${i}][1]`)];
  });
  const steps = [...textSteps(root.normalizer, 'normalizer'), ...textSteps(root.pre_tokenizer, 'pre_tokenizer')];
  const encoder = new HfBpe({
    vocab,
    merges,
    steps,
    unkToken,
    byteFallback,
    fuseUnk: model.fuse_unk === true,
    ignoreMerges: model.ignore_merges === true,
    userDefined: added.filter((t) => t.special !== true).map((t) => t.content as string),
  });

  const [bos, eos] = templateSpecials(root.post_processor);
  const controlId = (piece: string): number => {
    const id = vocab.pieceToId(piece);
    return id !== undefined && types[id] === PieceType.Control ? id : -1;
  };
  const prepends = steps.some((s) => (s.type === 'Prepend' ? s.prepend === SPACE_SYMBOL : s.type === 'Metaspace' && s.prependScheme !== 'never'));
  const original = structuredClone(root);
  return {
    vocab,
    encoder,
    // Without a template naming them, sentencepiece's default bos/eos pieces.
    bosId: controlId(bos ?? '<s>'),
    eosId: controlId(eos ?? '</s>'),
    unkId,
    unkSurface: ' \u2047 ',
    stripLeadingSpace: prepends,
    removeExtraWhitespaces: false,
    toJson: () => structuredClone(original),
  };
}

/** Flattens a normalizer or pre-tokenizer into the steps HfBpe applies; anything else is unsupported. */
function textSteps(value: unknown, what: string): HfTextStep[] {
  if (value === null || value === undefined) return [];
  const step = object(value, what);
  switch (step.type) {
    case 'Sequence': {
      const list = array(step.normalizers ?? step.pretokenizers, `${what}.Sequence`);
      return list.flatMap((s, i) => textSteps(s, `${what}[${i}]`));
    }
    case 'Prepend':
      return [{ type: 'Prepend', prepend: string(step.prepend, `${what}.prepend`) }];
    case 'Replace': {
      const pattern = object(step.pattern, `${what}.pattern`);
      if (pattern.String === undefined) throw new Error(`${what}: only string patterns are supported in Replace`);
      return [{ type: 'Replace', pattern: string(pattern.String, `${what}.pattern.String`), content: string(step.content, `${what}.content`) }];
    }
    case 'Metaspace': {
      // tokenizers < 0.19 wrote add_prefix_space and always split.
      const scheme = step.prepend_scheme ?? (step.add_prefix_space === false ? 'never' : 'always');
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') throw new Error(`${what}: unknown prepend_scheme ${JSON.stringify(scheme)}`);
      return [{ type: 'Metaspace', replacement: string(step.replacement, `${what}.replacement`), prependScheme: scheme, split: step.split !== false }];
    }
    default:
      throw new Error(`${what} ${JSON.stringify(step.type)} is not supported (only Prepend, Replace and Metaspace)`);
  }
}

/** The special tokens a TemplateProcessing post-processor puts before and after a single sequence. */
function templateSpecials(value: unknown): [bos: string | undefined, eos: string | undefined] {
  if (typeof value !== 'object' || value === null) return [undefined, undefined];
  const post = value as Json;
  if (post.type === 'Sequence' && Array.isArray(post.processors)) {
    const found = post.processors.map(templateSpecials).find(([b, e]) => b !== undefined || e !== undefined);
    return found ?? [undefined, undefined];
  }
  if (post.type !== 'TemplateProcessing' || !Array.isArray(post.single)) return [undefined, undefined];
  const items = post.single as Json[];
  const at = items.findIndex((item) => typeof item === 'object' && item !== null && 'Sequence' in item);
  const specialId = (item: Json | undefined): string | undefined => {
    const special = item?.SpecialToken as Json | undefined;
    return typeof special?.id === 'string' ? special.id : undefined;
  };
  return [at > 0 ? specialId(items[at - 1]) : undefined, at >= 0 ? specialId(items[at + 1]) : undefined];
}

// ---------------------------------------------------------------------------

/** An HF tokenizer.json for `t`, so that a model folder we save carries one. */
export function tokenizerToJson(t: Tokenizer): object {
  if (!(t instanceof BpeTokenizer)) throw new Error('tokenizerToJson needs a tokenizer made by loadTokenizer or tokenizerFrom*');
  return t.parts.toJson();
}

/** The files a tokenizer is read from, in the order loadTokenizer tries them. */
const TOKENIZER_SOURCES = ['tokenizer.model', 'tokenizer.json'];

/** Whether `dir` holds a tokenizer loadTokenizer reads. */
export const hasTokenizer = (dir: string): boolean => TOKENIZER_SOURCES.some((f) => fs.existsSync(path.join(dir, f)));

/** tokenizer.model if the folder has one, else tokenizer.json. */
export function loadTokenizer(modelDir: string): Tokenizer {
  const modelFile = path.join(modelDir, 'tokenizer.model');
  if (fs.existsSync(modelFile)) return tokenizerFromSentencePiece(fs.readFileSync(modelFile), modelFile);
  const jsonFile = path.join(modelDir, 'tokenizer.json');
  if (fs.existsSync(jsonFile)) {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
    } catch (e) {
      throw new Error(`${jsonFile}: not valid JSON: ${reason(e)}`, { cause: e });
    }
    return tokenizerFromJson(json, jsonFile);
  }
  throw new Error(`${modelDir}: no tokenizer.model or tokenizer.json in this folder`);
}
