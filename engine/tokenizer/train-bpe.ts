// Training a small sentencepiece-style BPE tokenizer (for the bundled default
// model, which cannot ship Meta's 32k tokenizer and is too small to afford a
// 32k embedding): spaces become "▁" and a "▁" is prepended, text is split into
// words that start at a "▁" (and runs of newlines), characters covering
// `characterCoverage` of the text become the alphabet (the rest fall back to
// byte tokens <0x00>…<0xFF>), then the most frequent adjacent pair is merged
// until the vocabulary is full. The result is an HF tokenizer.json that
// engine/tokenizer/tokenizer.ts loads (merges-rank BPE with byte fallback).
import { SPACE_SYMBOL } from './bpe';

export interface BpeTrainOptions {
  vocabSize: number;
  /** Fraction of character occurrences the alphabet must cover (sentencepiece's default 0.9995). */
  characterCoverage?: number;
  /** Longest piece, in characters. */
  maxPieceLength?: number;
  onProgress?: (merges: number, target: number) => void;
}

export interface TrainedBpe {
  /** id → piece: <unk>, <s>, </s>, 256 byte pieces, the alphabet, then merged pieces in merge order. */
  pieces: string[];
  merges: [string, string][];
}

const SPECIALS = ['<unk>', '<s>', '</s>'];
const BYTE_PIECES = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

/**
 * Words as sentencepiece's trainer sees them (split_by_whitespace,
 * split_by_unicode_script, split_digits): "▁letters", single digits, runs of
 * punctuation, newline runs — so no piece mixes letters with punctuation.
 */
export function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    const normalized = SPACE_SYMBOL + text.replace(/ /g, SPACE_SYMBOL);
    for (const w of normalized.match(WORD) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return counts;
}

const WORD = /\n+|▁?[\p{L}\p{M}]+|▁?\p{N}|▁?[^\p{L}\p{M}\p{N}▁\n]+|▁+/gu;

const key = (a: string, b: string) => `${a}\u0000${b}`;

export function trainBpe(texts: Iterable<string>, opts: BpeTrainOptions): TrainedBpe {
  const coverage = opts.characterCoverage ?? 0.9995;
  const maxLen = opts.maxPieceLength ?? 16;
  const wordCounts = countWords(texts);

  // Alphabet: the most frequent characters up to the coverage.
  const charCounts = new Map<string, number>();
  let totalChars = 0;
  for (const [w, n] of wordCounts) {
    for (const ch of w) {
      charCounts.set(ch, (charCounts.get(ch) ?? 0) + n);
      totalChars += n;
    }
  }
  const alphabet: string[] = [];
  let covered = 0;
  for (const [ch, n] of [...charCounts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) {
    if (covered >= coverage * totalChars && alphabet.includes(SPACE_SYMBOL)) break;
    alphabet.push(ch);
    covered += n;
  }
  const inAlphabet = new Set(alphabet);
  const target = opts.vocabSize - SPECIALS.length - BYTE_PIECES.length - alphabet.length;
  if (target < 0)
    throw new Error(
      `vocabulary size ${opts.vocabSize} is smaller than the ${SPECIALS.length + BYTE_PIECES.length + alphabet.length} special, byte and character pieces`,
    );

  // Words as symbol lists; a character outside the alphabet is a symbol that never merges (it becomes bytes).
  const words = [...wordCounts.entries()].map(([w, count]) => ({ symbols: [...w], count }));
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addPairs = (wi: number, sign: 1 | -1) => {
    const { symbols, count } = words[wi];
    for (let i = 0; i + 1 < symbols.length; i++) {
      const [a, b] = [symbols[i], symbols[i + 1]];
      if (!inAlphabet.has(a[0]) && a.length === 1) continue;
      if (!inAlphabet.has(b[0]) && b.length === 1) continue;
      if (a.length + b.length > maxLen) continue;
      const k = key(a, b);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + sign * count);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));

  const merges: [string, string][] = [];
  const merged: string[] = [];
  const known = new Set([...SPECIALS, ...BYTE_PIECES, ...alphabet]);
  while (merges.length < target) {
    // The most frequent pair; ties broken by the pair text so training is deterministic.
    let best = '';
    let bestCount = 1;
    for (const [k, n] of pairCounts) {
      if (n > bestCount || (n === bestCount && n > 1 && k < best)) {
        best = k;
        bestCount = n;
      }
    }
    if (!best) break; // nothing occurs twice any more
    const [a, b] = best.split('\u0000');
    const piece = a + b;
    for (const wi of pairWords.get(best) ?? []) {
      const w = words[wi];
      addPairs(wi, -1);
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(piece);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
      addPairs(wi, 1);
    }
    pairCounts.delete(best);
    pairWords.delete(best);
    merges.push([a, b]);
    if (!known.has(piece)) {
      known.add(piece);
      merged.push(piece);
    }
    if (merges.length % 250 === 0) opts.onProgress?.(merges.length, target);
  }
  // Pairs whose count fell to zero stay as keys with 0; harmless for training, and gone after.
  return { pieces: [...SPECIALS, ...BYTE_PIECES, ...alphabet, ...merged], merges };
}

/** The HF tokenizer.json of a trained BPE: LLaMA's layout (Prepend ▁ + Replace, byte fallback, BOS template). */
export function trainedBpeToJson(t: TrainedBpe): object {
  const replace = (from: string, to: string) => ({ type: 'Replace', pattern: { String: from }, content: to });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE_SYMBOL }, replace(' ', SPACE_SYMBOL)] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [replace(SPACE_SYMBOL, ' '), { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(t.pieces.map((p, id) => [p, id])),
      merges: t.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
