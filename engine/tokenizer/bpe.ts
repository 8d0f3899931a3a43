// BPE encoding, two ways that share one merge loop:
//  - score mode, sentencepiece's bpe_model.cc: any two adjacent symbols whose
//    concatenation is a vocabulary piece may merge, the highest-scoring piece first;
//  - rank mode, Hugging Face tokenizers' BPE (models/bpe/word.rs): only the
//    listed merges apply, the lowest rank first.
// Both break ties leftmost-first and keep a priority queue of candidate pairs,
// so a text of n characters costs O(n log n).
import { PieceType, type NormalizerSpec, type SentencePiece } from './sentencepiece-model';

/** U+2581 LOWER ONE EIGHTH BLOCK: sentencepiece's visible stand-in for a space. */
export const SPACE_SYMBOL = '\u2581';

/** One token of encoder output: its piece text and id. */
export interface Token {
  piece: string;
  id: number;
}

export interface Encoder {
  encode(text: string): Token[];
}

/** sentencepiece's byte pieces, "<0x00>" … "<0xFF>" (ByteToPiece). */
function bytePiece(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** The byte a "<0xXX>" piece stands for, or -1 (PieceToByte). */
export function pieceToByte(piece: string): number {
  return /^<0x[0-9A-F]{2}>$/.test(piece) ? parseInt(piece.slice(3, 5), 16) : -1;
}

/** Pieces that merges may produce: sentencepiece keeps these in `pieces_`, the rest in `reserved_id_map_`. */
function isMergeable(type: PieceType): boolean {
  return type === PieceType.Normal || type === PieceType.UserDefined || type === PieceType.Unused;
}

/** Piece table shared by both modes and by decoding. */
export class Vocabulary {
  private readonly ids = new Map<string, number>();

  constructor(
    readonly pieces: readonly string[],
    readonly types: readonly PieceType[],
  ) {
    // sentencepiece's PieceToId searches the reserved pieces (control, unknown,
    // byte) before the normal ones, so a reserved piece wins a name clash.
    const reserved = new Map<string, number>();
    pieces.forEach((piece, id) => {
      const map = isMergeable(types[id]) ? this.ids : reserved;
      if (map.has(piece)) throw new Error(`piece ${JSON.stringify(piece)} is defined twice (ids ${map.get(piece)} and ${id})`);
      map.set(piece, id);
    });
    for (const [piece, id] of reserved) this.ids.set(piece, id);
  }

  get size(): number {
    return this.pieces.length;
  }

  pieceToId(piece: string): number | undefined {
    return this.ids.get(piece);
  }
}

// ---------------------------------------------------------------------------
// The merge loop

/** Merge priority of two adjacent symbols (lower merges first), or undefined when they do not merge. */
type PairPriority = (left: string, right: string) => number | undefined;

interface Candidate {
  priority: number;
  left: number;
  right: number;
  /** Combined length when queued: a side that has grown since makes the entry stale. */
  length: number;
}

/** Binary min-heap of candidates by (priority, left index): sentencepiece's SymbolPairComparator. */
class CandidateHeap {
  private readonly items: Candidate[] = [];

  push(c: Candidate): void {
    const items = this.items;
    let i = items.push(c) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(c, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = c;
  }

  pop(): Candidate | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= items.length) break;
      if (child + 1 < items.length && before(items[child + 1], items[child])) child++;
      if (!before(items[child], last)) break;
      items[i] = items[child];
      i = child;
    }
    items[i] = last;
    return top;
  }
}

function before(a: Candidate, b: Candidate): boolean {
  return a.priority < b.priority || (a.priority === b.priority && a.left < b.left);
}

/**
 * Repeatedly merges the adjacent pair with the lowest priority (leftmost on
 * ties) until no pair merges; returns the final symbols in order. Frozen
 * symbols (user-defined pieces) never merge.
 */
function mergeSymbols(symbols: string[], frozen: boolean[], priority: PairPriority): string[] {
  const n = symbols.length;
  if (n === 0) return [];
  const text = symbols.slice();
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new CandidateHeap();
  const consider = (left: number, right: number): void => {
    if (left < 0 || right < 0 || frozen[left] || frozen[right]) return;
    const p = priority(text[left], text[right]);
    if (p !== undefined) heap.push({ priority: p, left, right, length: text[left].length + text[right].length });
  };
  for (let i = 1; i < n; i++) consider(i - 1, i);

  for (let top = heap.pop(); top; top = heap.pop()) {
    const { left, right } = top;
    // Stale entry: one side was merged away, or grew since it was queued
    // (bpe_model.cc compares sizes; symbols only ever grow, so this is exact).
    if (text[left] === '' || text[right] === '' || text[left].length + text[right].length !== top.length) continue;
    text[left] += text[right];
    text[right] = '';
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    consider(prev[left], left);
    consider(left, next[left]);
  }

  const out: string[] = [];
  for (let i = 0; i !== -1; i = next[i]) out.push(text[i]);
  return out;
}

// ---------------------------------------------------------------------------
// Splitting text into initial symbols

/** Length of the longest user-defined piece starting at text[pos] (sentencepiece's PrefixMatcher), or 0. */
type PrefixMatcher = (text: string, pos: number) => number;

function prefixMatcher(pieces: Iterable<string>): PrefixMatcher {
  const byFirstUnit = new Map<number, string[]>();
  for (const piece of pieces) {
    const list = byFirstUnit.get(piece.charCodeAt(0)) ?? [];
    list.push(piece);
    byFirstUnit.set(piece.charCodeAt(0), list);
  }
  for (const list of byFirstUnit.values()) list.sort((a, b) => b.length - a.length);
  return (text, pos) => {
    const candidates = byFirstUnit.get(text.charCodeAt(pos));
    if (candidates) for (const piece of candidates) if (text.startsWith(piece, pos)) return piece.length;
    return 0;
  };
}

/** UTF-16 length of the code point at text[pos] (input is well-formed, see wellFormed). */
function codePointLength(text: string, pos: number): number {
  const c = text.charCodeAt(pos);
  return c >= 0xd800 && c <= 0xdbff && pos + 1 < text.length ? 2 : 1;
}

/**
 * Lone UTF-16 surrogates have no UTF-8 form; sentencepiece replaces malformed
 * input with U+FFFD, and so does Node's UTF-8 encoder, one per surrogate.
 */
function wellFormed(text: string): string {
  return text.replace(/\p{Surrogate}/gu, '\uFFFD');
}

/** Initial symbols: a matched user-defined piece (frozen), else one Unicode character. */
function splitSymbols(text: string, match: PrefixMatcher): { symbols: string[]; frozen: boolean[] } {
  const symbols: string[] = [];
  const frozen: boolean[] = [];
  for (let pos = 0; pos < text.length;) {
    const userDefined = match(text, pos);
    const end = pos + (userDefined || codePointLength(text, pos));
    symbols.push(text.slice(pos, end));
    frozen.push(userDefined > 0);
    pos = end;
  }
  return { symbols, frozen };
}

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------
// Score mode: sentencepiece

export interface SentencePieceBpeOptions {
  pieces: readonly SentencePiece[];
  normalizer: NormalizerSpec;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
}

/**
 * sentencepiece's BPE model with its normalizer (identity rule only: no
 * precompiled charsmap). Construction checks the invariants sentencepiece's
 * ModelInterface::InitializePieces checks, with the same wording where it has one.
 */
export class SentencePieceBpe implements Encoder {
  readonly vocab: Vocabulary;
  private readonly unkId: number;
  private readonly scores: Float64Array;
  private readonly match: PrefixMatcher;

  constructor(private readonly options: SentencePieceBpeOptions) {
    const { pieces, byteFallback } = options;
    if (pieces.length === 0) throw new Error('the model has no pieces');
    this.vocab = new Vocabulary(
      pieces.map((p) => p.piece),
      pieces.map((p) => p.type),
    );
    this.scores = Float64Array.from(pieces, (p) => p.score);
    const unk: number[] = [];
    const bytes = new Set<number>();
    pieces.forEach(({ piece, type }, id) => {
      if (piece === '') throw new Error(`piece ${id} is empty (piece must not be empty)`);
      if (piece.includes('\0')) throw new Error(`piece ${id} includes a null character`);
      if (type === PieceType.Unknown) unk.push(id);
      if (type === PieceType.Byte) {
        if (!byteFallback) throw new Error(`byte piece ${piece} is found although \`byte_fallback\` is false`);
        const b = pieceToByte(piece);
        if (b < 0) throw new Error(`byte piece ${piece} is invalid`);
        bytes.add(b);
      }
    });
    if (unk.length !== 1) throw new Error(unk.length === 0 ? 'unk is not defined' : 'unk is already defined');
    this.unkId = unk[0];
    if (byteFallback && bytes.size !== 256) throw new Error('there are not 256 byte pieces although `byte_fallback` is true');
    this.match = prefixMatcher(pieces.filter((p) => p.type === PieceType.UserDefined).map((p) => p.piece));
  }

  encode(text: string): Token[] {
    const normalized = this.normalize(text);
    const { symbols, frozen } = splitSymbols(normalized, this.match);
    const { vocab, scores } = this;

    // Pairs are looked up among NORMAL, USER_DEFINED and UNUSED pieces only;
    // merges into an UNUSED piece are remembered so the result can be split
    // back into the two symbols it came from (bpe_model.cc's rev_merge).
    const revMerge = new Map<string, [string, string]>();
    const finals = mergeSymbols(symbols, frozen, (left, right) => {
      const merged = left + right;
      const id = vocab.pieceToId(merged);
      if (id === undefined || !isMergeable(vocab.types[id])) return undefined;
      if (vocab.types[id] === PieceType.Unused) revMerge.set(merged, [left, right]);
      return -scores[id];
    });

    const out: Token[] = [];
    let prevUnknown = false;
    const emit = (piece: string): void => {
      const id = vocab.pieceToId(piece) ?? this.unkId;
      const unknown = id === this.unkId;
      if (unknown && this.options.byteFallback) {
        // An unknown symbol becomes one <0xXX> piece per UTF-8 byte
        // (SentencePieceProcessor::PopulateSentencePieceText).
        for (const b of utf8.encode(piece)) out.push({ piece: bytePiece(b), id: vocab.pieceToId(bytePiece(b)) ?? this.unkId });
      } else if (unknown && prevUnknown) {
        // Without byte fallback, a run of unknown symbols is one <unk> whose piece is their text.
        out[out.length - 1].piece += piece;
      } else {
        out.push({ piece, id });
      }
      prevUnknown = unknown;
    };
    const resegment = (piece: string): void => {
      const id = vocab.pieceToId(piece);
      const parts = id !== undefined && vocab.types[id] === PieceType.Unused ? revMerge.get(piece) : undefined;
      if (!parts) return emit(piece);
      resegment(parts[0]);
      resegment(parts[1]);
    };
    for (const piece of finals) resegment(piece);
    return out;
  }

  /**
   * normalizer.cc's Normalizer::Normalize without a charsmap: empty text stays
   * empty; with remove_extra_whitespaces, leading, trailing and repeated spaces
   * go; add_dummy_prefix puts one space before the text (after it when
   * treat_whitespace_as_suffix); escape_whitespaces writes spaces as U+2581.
   * Text is read in chunks (a user-defined piece or one character), as there.
   */
  private normalize(text: string): string {
    const { normalizer: spec, treatWhitespaceAsSuffix: suffix } = this.options;
    const input = wellFormed(text);
    const chunkEnd = (pos: number): number => pos + (this.match(input, pos) || codePointLength(input, pos));
    const removeExtra = spec.removeExtraWhitespaces;
    let pos = 0;
    if (removeExtra) while (pos < input.length && chunkEnd(pos) === pos + 1 && input[pos] === ' ') pos++;
    if (pos >= input.length) return '';

    const space = spec.escapeWhitespaces ? SPACE_SYMBOL : ' ';
    let out = !suffix && spec.addDummyPrefix ? space : '';
    let prevIsSpace = removeExtra;
    while (pos < input.length) {
      const end = chunkEnd(pos);
      let chunk = input.slice(pos, end);
      pos = end;
      if (prevIsSpace) chunk = chunk.replace(/^ +/, '');
      if (chunk !== '') {
        out += spec.escapeWhitespaces ? chunk.replaceAll(' ', SPACE_SYMBOL) : chunk;
        prevIsSpace = removeExtra && chunk.endsWith(' ');
      }
    }
    if (removeExtra) while (out.endsWith(space)) out = out.slice(0, -space.length);
    if (suffix && spec.addDummyPrefix) out += space;
    return out;
  }
}

/**
 * The merges list transformers' LlamaConverter derives from sentencepiece
 * scores (convert_slow_tokenizer.generate_merges): every split of a piece into
 * two vocabulary pieces, ordered by the piece's score, then longer left part,
 * then longer right part, all descending; ties keep vocabulary order, and the
 * splits of one piece are sorted by (left id, right id). Only mergeable pieces
 * take part (transformers also lists control and byte pieces): sentencepiece
 * never merges into or out of those, and tokenizerFromJson does not split
 * special tokens out of the text, so such merges would only change results.
 *
 * Ranks cannot express sentencepiece's leftmost-first rule between merges of
 * equal score in general. Meta's LLaMA vocabulary has one such group, the
 * whitespace runs ▁ … ▁×16 (all −1e9, so merged last): sentencepiece grows a
 * run from its left end one ▁ at a time, and "longer left part first" makes
 * rank-BPE do the same, since (▁×k, ▁) outranks (▁, ▁).
 */
export function mergesFromScores(vocab: Vocabulary, scores: ArrayLike<number>): Array<[string, string]> {
  interface Merge {
    left: string;
    right: string;
    leftId: number;
    rightId: number;
    leftLength: number;
    rightLength: number;
    score: number;
    order: number;
  }
  const mergeableId = (piece: string): number | undefined => {
    const id = vocab.pieceToId(piece);
    return id !== undefined && isMergeable(vocab.types[id]) ? id : undefined;
  };
  const merges: Merge[] = [];
  vocab.pieces.forEach((piece, id) => {
    if (!isMergeable(vocab.types[id])) return;
    const chars = [...piece]; // Python's len() and slicing count code points
    const local: Merge[] = [];
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const leftId = mergeableId(left);
      const rightId = mergeableId(right);
      if (leftId === undefined || rightId === undefined) continue;
      local.push({ left, right, leftId, rightId, leftLength: k, rightLength: chars.length - k, score: scores[id], order: 0 });
    }
    local.sort((a, b) => a.leftId - b.leftId || a.rightId - b.rightId);
    for (const m of local) merges.push({ ...m, order: merges.length });
  });
  merges.sort((a, b) => b.score - a.score || b.leftLength - a.leftLength || b.rightLength - a.rightLength || a.order - b.order);
  return merges.map((m) => [m.left, m.right]);
}

// ---------------------------------------------------------------------------
// Rank mode: Hugging Face tokenizer.json

/** The text steps LLaMA tokenizer.json files use, in order (normalizer, then pre-tokenizer). */
export type HfTextStep =
  | { type: 'Prepend'; prepend: string }
  | { type: 'Replace'; pattern: string; content: string }
  | { type: 'Metaspace'; replacement: string; prependScheme: 'always' | 'first' | 'never'; split: boolean };

export interface HfBpeOptions {
  vocab: Vocabulary;
  merges: ReadonlyArray<readonly [string, string]>;
  steps: readonly HfTextStep[];
  unkToken: string;
  byteFallback: boolean;
  fuseUnk: boolean;
  ignoreMerges: boolean;
  /** Added tokens that are not special: matched before merging and never merged, like user-defined pieces. */
  userDefined: readonly string[];
}

/** HF tokenizers' BPE model behind its normalizer and pre-tokenizer. */
export class HfBpe implements Encoder {
  private readonly ranks = new Map<string, Map<string, number>>();
  private readonly match: PrefixMatcher;

  constructor(private readonly options: HfBpeOptions) {
    const { vocab, merges, unkToken } = options;
    merges.forEach(([left, right], rank) => {
      for (const piece of [left, right, left + right]) {
        if (vocab.pieceToId(piece) === undefined)
          throw new Error(`merge ${rank} (${JSON.stringify(`${left} ${right}`)}) uses ${JSON.stringify(piece)}, which is not in the vocabulary`);
      }
      // A repeated merge takes its last rank, as tokenizers' HashMap collect does.
      const byLeft = this.ranks.get(left) ?? new Map<string, number>();
      byLeft.set(right, rank);
      this.ranks.set(left, byLeft);
    });
    if (vocab.pieceToId(unkToken) === undefined) throw new Error(`unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
    this.match = prefixMatcher(options.userDefined);
  }

  encode(text: string): Token[] {
    const out: Token[] = [];
    for (const word of this.preTokenize(wellFormed(text))) {
      // Every symbol is a vocabulary piece: encodeWord checked each character
      // and the constructor each merge result.
      for (const piece of this.encodeWord(word)) out.push({ piece, id: this.options.vocab.pieceToId(piece) as number });
    }
    return out;
  }

  /**
   * Normalizers Prepend (only to non-empty text) and Replace, then the
   * Metaspace pre-tokenizer: spaces to the replacement, which is prepended
   * unless the text already starts with it ("first" is "always" here: special
   * tokens are not split out of the text, so there is a single first section),
   * and with split=true each replacement starts a new word.
   */
  private preTokenize(text: string): string[] {
    let s = text;
    let split: string | undefined;
    for (const step of this.options.steps) {
      if (step.type === 'Prepend') {
        if (s !== '') s = step.prepend + s;
      } else if (step.type === 'Replace') {
        s = s.replaceAll(step.pattern, step.content);
      } else {
        s = s.replaceAll(' ', step.replacement);
        if (step.prependScheme !== 'never' && s !== '' && !s.startsWith(step.replacement)) s = step.replacement + s;
        if (step.split) split = step.replacement;
      }
    }
    if (s === '') return [];
    if (split === undefined) return [s];
    const words: string[] = [];
    let start = 0;
    for (let i = s.indexOf(split, 1); i !== -1; i = s.indexOf(split, i + split.length)) {
      words.push(s.slice(start, i));
      start = i;
    }
    words.push(s.slice(start));
    return words;
  }

  /**
   * word.rs: characters not in the vocabulary become their <0xXX> byte
   * tokens before merging (byte_fallback), else the unk token, consecutive
   * unks fused into one (fuse_unk).
   */
  private encodeWord(word: string): string[] {
    const { vocab, unkToken, byteFallback, fuseUnk, ignoreMerges } = this.options;
    if (ignoreMerges && vocab.pieceToId(word) !== undefined) return [word];
    const { symbols: chars, frozen: charFrozen } = splitSymbols(word, this.match);
    const symbols: string[] = [];
    const frozen: boolean[] = [];
    let prevUnk = false;
    chars.forEach((c, i) => {
      let parts = [c];
      let unk = false;
      if (vocab.pieceToId(c) === undefined) {
        const bytes = byteFallback ? Array.from(utf8.encode(c), bytePiece) : [];
        unk = bytes.length === 0 || bytes.some((b) => vocab.pieceToId(b) === undefined);
        parts = unk ? (fuseUnk && prevUnk ? [] : [unkToken]) : bytes;
      }
      prevUnk = unk;
      for (const p of parts) {
        symbols.push(p);
        frozen.push(charFrozen[i]);
      }
    });
    return mergeSymbols(symbols, frozen, (left, right) => this.ranks.get(left)?.get(right));
  }
}
