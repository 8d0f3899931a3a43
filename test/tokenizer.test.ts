// The LLaMA sentencepiece BPE tokenizer against sentencepiece 0.2.2 itself:
// 180 golden cases produced by the real library on Meta's tokenizer.model
// (test/fixtures/tokenizer/cases.json, fields described in meta.json), plus
// behaviour the golden cases do not reach, on a small hand-built model.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, tokenizerFromJson, tokenizerFromSentencePiece, tokenizerToJson, type Tokenizer } from '../engine/tokenizer/tokenizer';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(repoRoot, 'test/fixtures/tokenizer');
const META_MODEL = path.resolve(repoRoot, '../shared/reference/mobilellm-tokenizer/tokenizer.model');
const hasMetaModel = fs.existsSync(META_MODEL);
if (!hasMetaModel) console.warn(`Meta's tokenizer.model not found at ${META_MODEL}: tokenizer golden tests skipped`);

interface GoldenCase {
  text: string;
  ids: number[];
  ids_with_bos: number[];
  pieces: string[];
  decoded: string;
}
const cases: GoldenCase[] = JSON.parse(fs.readFileSync(path.join(fixtures, 'cases.json'), 'utf8'));
const meta = JSON.parse(fs.readFileSync(path.join(fixtures, 'meta.json'), 'utf8'));
const rows = cases.map((c, i) => ({ ...c, name: `#${i} ${JSON.stringify(c.text).slice(0, 48)}` }));

/** Pushes ids one at a time; returns the chunks, the last one from flush(). */
function streamChunks(t: Tokenizer, ids: number[]): string[] {
  const stream = t.streamDecoder();
  return [...ids.map((id) => stream.push(id)), stream.flush()];
}

function expectOneLineError(fn: () => unknown, mentions: string): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toContain(mentions);
  expect(message).not.toContain('\n');
}

/** Deterministic bytes for the random-input test (mulberry32). */
function randomBytes(seed: number, length: number): Uint8Array {
  let a = seed;
  return Uint8Array.from({ length }, () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  });
}

describe.skipIf(!hasMetaModel)("Meta's tokenizer.model against sentencepiece 0.2.2", () => {
  let sp: Tokenizer;
  let hf: Tokenizer;
  beforeAll(() => {
    sp = loadTokenizer(path.dirname(META_MODEL));
    // Round trip through our tokenizer.json: HF merges-rank BPE, not scores.
    hf = tokenizerFromJson(JSON.parse(JSON.stringify(tokenizerToJson(sp))), 'exported tokenizer.json');
  });

  it('reads vocabulary size and special ids from the model', () => {
    expect(sp.vocabSize).toBe(meta.vocab_size);
    expect([sp.bosId, sp.eosId, sp.unkId]).toEqual([meta.bos_id, meta.eos_id, meta.unk_id]);
    expect([sp.idToPiece(1), sp.pieceToId('</s>'), sp.pieceToId('▁Hello'), sp.pieceToId('no such piece')]).toEqual(['<s>', 2, 15043, undefined]);
    expect(cases).toHaveLength(meta.count);
  });

  it.each(rows)('ids $name', (c) => expect(sp.encode(c.text)).toEqual(c.ids));
  it.each(rows)('ids with BOS $name', (c) => expect(sp.encode(c.text, { bos: true })).toEqual(c.ids_with_bos));
  it.each(rows)('pieces $name', (c) => expect(sp.tokenize(c.text)).toEqual(c.pieces));
  it.each(rows)('decode $name', (c) => expect(sp.decode(c.ids)).toBe(c.decoded));

  it.each(rows)('streamDecoder $name', (c) => {
    const chunks = streamChunks(sp, c.ids);
    expect(chunks.join('')).toBe(sp.decode(c.ids));
    for (const chunk of chunks) expect(chunk).not.toMatch(/\p{Surrogate}/u);
  });

  // All 180 agree: the exported merges order the equal-score whitespace runs
  // (▁ … ▁×16, all −1e9) longest first, which makes rank-BPE grow a run from
  // its left end as sentencepiece's leftmost-first rule does (see mergesFromScores).
  it.each(rows)('tokenizer.json path $name', (c) => {
    expect(hf.encode(c.text, { bos: true })).toEqual(c.ids_with_bos);
    expect(hf.decode(c.ids)).toBe(c.decoded);
  });

  it('tokenizer.json path agrees on long whitespace runs and a 100 KB text', () => {
    const runs = Array.from({ length: 80 }, (_, n) => `x${' '.repeat(n + 1)}y\n${'\t'.repeat(n % 3)}${' '.repeat(n)}z`);
    for (const text of runs) expect(hf.encode(text)).toEqual(sp.encode(text));
    const big = bigText();
    expect(hf.encode(big)).toEqual(sp.encode(big));
  });

  it('encodes a 100 KB text and decodes it back', () => {
    const big = bigText();
    const ids = sp.encode(big);
    expect(ids.length).toBeGreaterThan(20_000);
    expect(sp.decode(ids)).toBe(big);
  });

  it('falls back to UTF-8 byte tokens for characters outside the vocabulary, and back', () => {
    const texts = ['🦀 crab, 🦙 llama', '龘龘 and 𝕏', '👩‍👩‍👧‍👦 family', '🇯🇵🇫🇷', 'mixed 中文 😀 text'];
    for (const text of texts) {
      const ids = sp.encode(text);
      expect(ids.some((id) => /^<0x[0-9A-F]{2}>$/.test(sp.idToPiece(id)))).toBe(true);
      expect(sp.decode(ids)).toBe(text);
      expect(streamChunks(sp, ids).join('')).toBe(text);
    }
  });

  it('streams a 4-byte character only once its last byte arrives', () => {
    const ids = sp.encode('😀!'); // ▁ <0xF0> <0x9F> <0x98> <0x80> !
    expect(streamChunks(sp, ids)).toEqual(['', '', '', '', '😀', '!', '']);
  });

  it('decodes like sentencepiece: control ids skipped, <unk> as " ⁇ ", bad bytes as one U+FFFD each', () => {
    const byte = (b: number): number => sp.pieceToId(`<0x${b.toString(16).toUpperCase()}>`) as number;
    const hello = sp.pieceToId('▁hello') as number;
    expect(sp.decode([sp.bosId, hello, sp.eosId])).toBe('hello');
    expect(sp.decode([sp.unkId, hello])).toBe(' ⁇  hello');
    // A run cut short by a non-byte piece: each byte is its own U+FFFD, and the
    // text before ▁hello keeps its space.
    const broken = [byte(0xf0), byte(0x9f), hello, byte(0xe2)];
    expect(sp.decode(broken)).toBe('\uFFFD\uFFFD hello\uFFFD');
    expect(streamChunks(sp, broken).join('')).toBe(sp.decode(broken));
    // The overlong encoding of '/' and an encoded surrogate are not characters.
    expect(sp.decode([byte(0xc0), byte(0xaf), byte(0xed), byte(0xa0), byte(0x80)])).toBe('\uFFFD'.repeat(5));
    expect(() => sp.decode([sp.vocabSize])).toThrow(RangeError);
  });

  it('exports a LLaMA-style tokenizer.json that loadTokenizer can read from a folder', () => {
    const json = tokenizerToJson(sp) as { model: Record<string, unknown>; normalizer: unknown; decoder: unknown };
    expect(json.model).toMatchObject({ type: 'BPE', byte_fallback: true, unk_token: '<unk>' });
    expect(json.normalizer).toEqual({
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    });
    expect((json.decoder as { decoders: Array<{ type: string }> }).decoders.map((d) => d.type)).toEqual(['Replace', 'ByteFallback', 'Fuse', 'Strip']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-tokenizer-'));
    try {
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
      const loaded = loadTokenizer(dir);
      expect([loaded.vocabSize, loaded.bosId, loaded.eosId, loaded.unkId]).toEqual([32000, 1, 2, 0]);
      expect(loaded.encode(cases[0].text)).toEqual(cases[0].ids);
      expect(tokenizerToJson(loaded)).toEqual(json);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a Metaspace tokenizer.json with HF semantics (no extra ▁ when the text starts with a space)', () => {
    const json = tokenizerToJson(sp) as Record<string, unknown>;
    json.normalizer = null;
    json.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
    const metaspace = tokenizerFromJson(json);
    expect(metaspace.encode('Hello world')).toEqual(sp.encode('Hello world'));
    expect(metaspace.encode(' hello')).toEqual(sp.encode('hello'));
    expect(sp.encode(' hello')).toEqual(cases.find((c) => c.text === ' hello')?.ids);
  });

  it('rejects truncated and random bytes with a one-line error naming the file', () => {
    const bytes = fs.readFileSync(META_MODEL);
    for (const cut of [0, 1, 2, 100, 4097, bytes.length >> 1, bytes.length - 1]) {
      expectOneLineError(() => tokenizerFromSentencePiece(bytes.subarray(0, cut), '/models/x/tokenizer.model'), '/models/x/tokenizer.model');
    }
    for (let seed = 1; seed <= 50; seed++) {
      expectOneLineError(() => tokenizerFromSentencePiece(randomBytes(seed, 16 + seed * 37), 'random.model'), 'random.model');
    }
  });
});

// ---------------------------------------------------------------------------
// A hand-built model for behaviour Meta's model does not exercise.

const encodeUtf8 = (s: string): number[] => [...new TextEncoder().encode(s)];

function varint(value: number): number[] {
  let v = BigInt.asUintN(64, BigInt(value)); // negative int32 → 10-byte two's complement, as protobuf writes it
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return out;
}
const tag = (field: number, wire: number): number[] => varint(field * 8 + wire);
const int = (field: number, value: number): number[] => [...tag(field, 0), ...varint(value)];
const bytesField = (field: number, body: number[]): number[] => [...tag(field, 2), ...varint(body.length), ...body];
const str = (field: number, s: string): number[] => bytesField(field, encodeUtf8(s));
function float(field: number, value: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value, true);
  return [...tag(field, 5), ...b];
}

const NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6;

/** pieces: [piece, score, type]; trainer and normalizer fields override the defaults below. */
function tinyModel(
  pieces: Array<[string, number, number]>,
  opts: { byteFallback?: boolean; modelType?: number; removeExtraWhitespaces?: boolean } = {},
): Uint8Array {
  const trainer = [
    ...str(1, 'corpus.txt'), // input: an unread string field
    ...int(3, opts.modelType ?? 2),
    ...int(4, pieces.length),
    ...float(10, 0.9995), // character_coverage: an unread fixed32 field
    ...tag(99, 1),
    ...[1, 2, 3, 4, 5, 6, 7, 8], // an unknown fixed64 field
    ...int(35, opts.byteFallback ? 1 : 0),
    ...int(40, 0),
    ...int(41, 1),
    ...int(42, 2),
    ...int(43, -1), // pad_id = -1
  ];
  const normalizer = [...str(1, 'identity'), ...int(3, 1), ...int(4, opts.removeExtraWhitespaces ? 1 : 0)];
  return Uint8Array.from([
    ...pieces.flatMap(([piece, score, type]) => bytesField(1, [...str(1, piece), ...float(2, score), ...int(3, type)])),
    ...bytesField(2, trainer),
    ...bytesField(3, normalizer),
    ...bytesField(4, str(1, 'self test data: skipped')),
  ]);
}

const tinyPieces: Array<[string, number, number]> = [
  ['<unk>', 0, UNKNOWN],
  ['<s>', 0, CONTROL],
  ['</s>', 0, CONTROL],
  ['▁', -10, NORMAL],
  ['a', -11, NORMAL],
  ['b', -12, NORMAL],
  ['c', -13, NORMAL],
  ['▁a', -2, NORMAL],
  ['ab', -1, NORMAL],
  ['abc', -0.5, UNUSED],
  ['<sep>', 0, USER_DEFINED],
  ['▁b', -3, NORMAL],
];

describe('sentencepiece rules on a hand-built model', () => {
  const tiny = tokenizerFromSentencePiece(tinyModel(tinyPieces), 'tiny.model');

  it('skips unknown fields of every wire type and reads pad_id = -1', () => {
    expect([tiny.vocabSize, tiny.bosId, tiny.eosId, tiny.unkId]).toEqual([12, 1, 2, 0]);
  });

  it('merges the highest-scoring pair first, not the leftmost', () => {
    // ▁a (−2) and ab (−1) compete for the 'a': ab wins.
    expect(tiny.tokenize('ab')).toEqual(['▁', 'ab']);
    expect(tiny.tokenize('a')).toEqual(['▁a']);
  });

  it('splits a merge into an UNUSED piece back into its two halves', () => {
    // ab, then ab+c = abc (UNUSED, −0.5): resegmented into ab, c.
    expect(tiny.tokenize('abc')).toEqual(['▁', 'ab', 'c']);
    expect(tiny.encode('abc')).toEqual([3, 8, 6]);
  });

  it('matches USER_DEFINED pieces first and never merges them', () => {
    expect(tiny.tokenize('a<sep>b')).toEqual(['▁a', '<sep>', 'b']);
  });

  it('without byte fallback, folds a run of unknown characters into one <unk>', () => {
    expect(tiny.tokenize('a☃☃b')).toEqual(['▁a', '☃☃', 'b']);
    expect(tiny.encode('a☃☃b')).toEqual([7, 0, 5]);
    expect(tiny.decode([7, 0, 5])).toBe('a ⁇ b');
  });

  it('does not parse special-token text', () => {
    expect(tiny.encode('<s>', { bos: true, eos: true })).toEqual([1, 3, 0, 2]);
  });

  it('with remove_extra_whitespaces, drops leading, trailing and repeated spaces', () => {
    const squeezing = tokenizerFromSentencePiece(tinyModel(tinyPieces, { removeExtraWhitespaces: true }), 'squeeze.model');
    expect(squeezing.tokenize('  a   b  ')).toEqual(['▁a', '▁b']);
    expect(squeezing.tokenize('   ')).toEqual([]);
    expect(squeezing.decode([3, 3, 7])).toBe('a');
  });

  it.each([
    { name: 'empty file', bytes: new Uint8Array(0), error: 'no trainer_spec' },
    { name: 'unigram model', bytes: tinyModel(tinyPieces, { modelType: 1 }), error: 'model_type Unigram is not supported' },
    { name: 'byte piece without byte_fallback', bytes: tinyModel([...tinyPieces, ['<0x41>', 0, BYTE]]), error: 'byte piece <0x41> is found' },
    { name: 'byte_fallback with 1 byte piece', bytes: tinyModel([...tinyPieces, ['<0x41>', 0, BYTE]], { byteFallback: true }), error: 'not 256 byte pieces' },
    { name: 'no unknown piece', bytes: tinyModel(tinyPieces.slice(1)), error: 'unk is not defined' },
    { name: 'duplicate piece', bytes: tinyModel([...tinyPieces, ['ab', -5, NORMAL]]), error: 'piece "ab" is defined twice' },
    { name: 'field with a wrong wire type', bytes: Uint8Array.from(int(1, 5)), error: 'field 1 has wire type 0' },
    { name: 'invalid UTF-8 piece', bytes: Uint8Array.from(bytesField(1, [0x0a, 1, 0xff])), error: 'invalid UTF-8' },
  ])('rejects a model with $name', ({ bytes, error }) => {
    expectOneLineError(() => tokenizerFromSentencePiece(bytes, 'bad.model'), 'bad.model');
    expect(() => tokenizerFromSentencePiece(bytes, 'bad.model')).toThrow(error);
  });
});

describe('loadTokenizer', () => {
  function withFolder(files: Record<string, string | Uint8Array>, fn: (dir: string) => void): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-tokenizer-'));
    try {
      for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
      fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  it('names the folder when it has neither tokenizer.model nor tokenizer.json', () => {
    withFolder({ 'config.json': '{}' }, (dir) => expectOneLineError(() => loadTokenizer(dir), dir));
  });

  it('prefers tokenizer.model and names the file when it is malformed', () => {
    withFolder({ 'tokenizer.model': randomBytes(7, 300), 'tokenizer.json': '{}' }, (dir) =>
      expectOneLineError(() => loadTokenizer(dir), path.join(dir, 'tokenizer.model')),
    );
  });

  it('names tokenizer.json when it is not JSON or not a BPE tokenizer', () => {
    withFolder({ 'tokenizer.json': '{"model": {' }, (dir) => expectOneLineError(() => loadTokenizer(dir), path.join(dir, 'tokenizer.json')));
    withFolder({ 'tokenizer.json': '{"model": {"type": "Unigram"}}' }, (dir) => expectOneLineError(() => loadTokenizer(dir), path.join(dir, 'tokenizer.json')));
  });
});

/** About 100 KB of mixed English, code, whitespace and non-Latin text. */
function bigText(): string {
  const paragraph = cases
    .map((c) => c.text)
    .filter((t) => !t.includes('▁')) // a literal U+2581 decodes as a space
    .join(' ');
  return paragraph.repeat(Math.ceil(100_000 / paragraph.length));
}
