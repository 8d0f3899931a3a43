// Decoder for sentencepiece's `tokenizer.model`: a serialized ModelProto
// (sentencepiece_model.proto, proto2). Only the fields that change how text is
// tokenized are kept; everything else is skipped by wire type. Field numbers:
//
//   ModelProto      { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                     NormalizerSpec normalizer_spec = 3; SelfTestData self_test_data = 4;
//                     NormalizerSpec denormalizer_spec = 5 }
//   SentencePiece   { string piece = 1; float score = 2; Type type = 3 [default NORMAL] }
//   TrainerSpec     { ModelType model_type = 3; int32 vocab_size = 4;
//                     bool treat_whitespace_as_suffix = 24; bool byte_fallback = 35;
//                     int32 unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43;
//                     string unk_surface = 44; string unk_piece = 45, bos_piece = 46,
//                     eos_piece = 47, pad_piece = 48 }
//   NormalizerSpec  { string name = 1; bytes precompiled_charsmap = 2;
//                     bool add_dummy_prefix = 3; bool remove_extra_whitespaces = 4;
//                     bool escape_whitespaces = 5 }
//
// Defaults are proto2's declared defaults, which sentencepiece relies on (a
// model that omits remove_extra_whitespaces gets `true`).

export enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export enum ModelType {
  Unigram = 1,
  Bpe = 2,
  Word = 3,
  Char = 4,
}

export interface SentencePiece {
  piece: string;
  /** float32 in the file; merge priority for BPE (larger merges first). */
  score: number;
  type: PieceType;
}

export interface TrainerSpec {
  modelType: ModelType;
  vocabSize: number;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  /** What decode() prints for <unk>: U+2047 between spaces unless overridden. */
  unkSurface: string;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
}

export interface NormalizerSpec {
  name: string;
  /** Byte length of the compiled normalization trie; 0 for "identity". */
  precompiledCharsmapBytes: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface ModelProto {
  pieces: SentencePiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** Present only when the model carries a denormalization rule (a non-empty charsmap). */
  denormalizerSpec?: NormalizerSpec;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// ignoreBOM: keep a leading U+FEFF. LLaMA's vocabulary has the piece "\uFEFF",
// which the default decoder would silently turn into an empty piece.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bounds-checked protobuf wire-format reader over one message's bytes. */
class WireReader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  /** A varint's low and high 32 bits (unsigned); at most 10 bytes. */
  private varint(): [lo: number, hi: number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new Error(`truncated varint at byte ${this.pos}`);
      const b = this.bytes[this.pos++];
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) return [lo >>> 0, hi >>> 0];
    }
    throw new Error(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** Unsigned varint as a number (lengths, enums, bools): exact below 2^53. */
  uint(): number {
    const [lo, hi] = this.varint();
    return hi * 2 ** 32 + lo;
  }

  /** int32 fields hold negative values (pad_id = -1) as 10-byte two's complement: keep the low 32 bits. */
  int32(): number {
    return this.varint()[0] | 0;
  }

  bool(): boolean {
    return this.uint() !== 0;
  }

  float(): number {
    this.need(4);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  bytesField(): Uint8Array {
    const len = this.uint();
    this.need(len);
    const out = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  string(): string {
    const start = this.pos;
    try {
      return utf8.decode(this.bytesField());
    } catch (e) {
      if (e instanceof TypeError) throw new Error(`invalid UTF-8 in string at byte ${start}`, { cause: e });
      throw e;
    }
  }

  /** Next field's number and wire type. */
  tag(): { field: number; wire: number } {
    const key = this.uint();
    const field = Math.floor(key / 8);
    if (field === 0) throw new Error(`field number 0 at byte ${this.pos}`);
    return { field, wire: key % 8 };
  }

  /** Skips a field we do not read. Groups (wire types 3, 4) are not used by sentencepiece. */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.need(8);
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.bytesField();
        return;
      case WIRE_FIXED32:
        this.need(4);
        this.pos += 4;
        return;
      default:
        throw new Error(`unsupported wire type ${wire} at byte ${this.pos}`);
    }
  }

  /** Checks a known field's wire type, so a corrupt file cannot be read as the wrong kind of value. */
  expect(field: number, wire: number, want: number): void {
    if (wire !== want) throw new Error(`field ${field} has wire type ${wire}, expected ${want} (before byte ${this.pos})`);
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) {
      throw new Error(`truncated: ${n} bytes needed at byte ${this.pos}, ${this.bytes.length - this.pos} left`);
    }
  }
}

/** Reads every field of one message, handing known fields to `onField` (which returns false for unknown ones). */
function readMessage(bytes: Uint8Array, onField: (r: WireReader, field: number, wire: number) => boolean): void {
  const r = new WireReader(bytes);
  while (!r.done) {
    const { field, wire } = r.tag();
    if (!onField(r, field, wire)) r.skip(wire);
  }
}

function parsePiece(bytes: Uint8Array): SentencePiece {
  const p: SentencePiece = { piece: '', score: 0, type: PieceType.Normal };
  readMessage(bytes, (r, field, wire) => {
    switch (field) {
      case 1:
        r.expect(field, wire, WIRE_LEN);
        p.piece = r.string();
        return true;
      case 2:
        r.expect(field, wire, WIRE_FIXED32);
        p.score = r.float();
        return true;
      case 3: {
        r.expect(field, wire, WIRE_VARINT);
        const t = r.uint();
        if (!(t in PieceType)) throw new Error(`unknown piece type ${t}`);
        p.type = t;
        return true;
      }
      default:
        return false;
    }
  });
  return p;
}

function parseTrainerSpec(bytes: Uint8Array): TrainerSpec {
  const t: TrainerSpec = {
    modelType: ModelType.Unigram,
    vocabSize: 8000,
    treatWhitespaceAsSuffix: false,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: ' \u2047 ',
    unkPiece: '<unk>',
    bosPiece: '<s>',
    eosPiece: '</s>',
    padPiece: '<pad>',
  };
  const ints: Partial<Record<number, 'vocabSize' | 'unkId' | 'bosId' | 'eosId' | 'padId'>> = {
    4: 'vocabSize',
    40: 'unkId',
    41: 'bosId',
    42: 'eosId',
    43: 'padId',
  };
  const strings: Partial<Record<number, 'unkSurface' | 'unkPiece' | 'bosPiece' | 'eosPiece' | 'padPiece'>> = {
    44: 'unkSurface',
    45: 'unkPiece',
    46: 'bosPiece',
    47: 'eosPiece',
    48: 'padPiece',
  };
  readMessage(bytes, (r, field, wire) => {
    const intKey = ints[field];
    const stringKey = strings[field];
    if (intKey) {
      r.expect(field, wire, WIRE_VARINT);
      t[intKey] = r.int32();
    } else if (stringKey) {
      r.expect(field, wire, WIRE_LEN);
      t[stringKey] = r.string();
    } else if (field === 3) {
      r.expect(field, wire, WIRE_VARINT);
      t.modelType = r.uint();
    } else if (field === 24) {
      r.expect(field, wire, WIRE_VARINT);
      t.treatWhitespaceAsSuffix = r.bool();
    } else if (field === 35) {
      r.expect(field, wire, WIRE_VARINT);
      t.byteFallback = r.bool();
    } else return false;
    return true;
  });
  return t;
}

function parseNormalizerSpec(bytes: Uint8Array): NormalizerSpec {
  const n: NormalizerSpec = {
    name: '',
    precompiledCharsmapBytes: 0,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  readMessage(bytes, (r, field, wire) => {
    switch (field) {
      case 1:
        r.expect(field, wire, WIRE_LEN);
        n.name = r.string();
        return true;
      case 2:
        r.expect(field, wire, WIRE_LEN);
        n.precompiledCharsmapBytes = r.bytesField().length;
        return true;
      case 3:
      case 4:
      case 5: {
        r.expect(field, wire, WIRE_VARINT);
        const v = r.bool();
        if (field === 3) n.addDummyPrefix = v;
        else if (field === 4) n.removeExtraWhitespaces = v;
        else n.escapeWhitespaces = v;
        return true;
      }
      default:
        return false;
    }
  });
  return n;
}

/**
 * Parses a serialized ModelProto. Throws an Error with a one-line reason on any
 * wire-format violation (truncation, bad wire type, invalid UTF-8) or when the
 * trainer or normalizer spec is missing (sentencepiece always writes both, and
 * without them proto2 defaults would silently change tokenization).
 */
export function parseModelProto(bytes: Uint8Array): ModelProto {
  const pieces: SentencePiece[] = [];
  let trainerSpec: TrainerSpec | undefined;
  let normalizerSpec: NormalizerSpec | undefined;
  let denormalizerSpec: NormalizerSpec | undefined;
  readMessage(bytes, (r, field, wire) => {
    if (field < 1 || field > 5 || field === 4) return false;
    r.expect(field, wire, WIRE_LEN);
    const body = r.bytesField();
    if (field === 1) pieces.push(parsePiece(body));
    else if (field === 2) trainerSpec = parseTrainerSpec(body);
    else if (field === 3) normalizerSpec = parseNormalizerSpec(body);
    else denormalizerSpec = parseNormalizerSpec(body);
    return true;
  });
  if (!trainerSpec) throw new Error('no trainer_spec (field 2)');
  if (!normalizerSpec) throw new Error('no normalizer_spec (field 3)');
  return { pieces, trainerSpec, normalizerSpec, ...(denormalizerSpec ? { denormalizerSpec } : {}) };
}
