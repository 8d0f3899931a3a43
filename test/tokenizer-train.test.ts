// Training the small BPE tokenizer the bundled model uses.
import { describe, expect, it } from 'vitest';
import { countWords, trainBpe, trainedBpeToJson } from '../engine/tokenizer/train-bpe';
import { tokenizerFromJson } from '../engine/tokenizer/tokenizer';

const corpus = [
  'The whale swam past the ship. The whale was white, and the ship was slow.',
  'A white whale! The sailors saw the whale from the ship at 12 noon.',
  'Call me Ishmael. Some years ago, having little money, I went to sea.\n\nThe sea was grey.',
];

describe('BPE training', () => {
  it('splits words the way sentencepiece trains: "▁"-words, punctuation and digits apart, newline runs', () => {
    const w = countWords(['The whale, 12 whales.\n\nThe end']);
    expect([...w.keys()]).toEqual(['▁The', '▁whale', ',', '▁1', '2', '▁whales', '.', '\n\n', 'The', '▁end']);
    expect(w.get('▁The')).toBe(1);
  });

  it('learns frequent words as pieces, deterministically, within the vocabulary size', () => {
    const a = trainBpe(corpus, { vocabSize: 330 });
    const b = trainBpe(corpus, { vocabSize: 330 });
    expect(a).toEqual(b);
    expect(a.pieces.length).toBeLessThanOrEqual(330);
    expect(a.pieces.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(a.pieces).toContain('▁whale');
    expect(a.pieces).toContain('▁ship');
    expect(a.pieces.some((p) => /[a-z][.,!]|[.,!][a-z]/.test(p))).toBe(false);
  });

  it('gives a tokenizer.json that round-trips any text, falling back to bytes outside the alphabet', () => {
    const tok = tokenizerFromJson(trainedBpeToJson(trainBpe(corpus, { vocabSize: 330 })));
    for (const text of [...corpus, 'An unseen word: 日本 🐋 — zebra.', '  leading spaces and\ttabs']) {
      const ids = tok.encode(text);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.tokenize('The whale')).toEqual(['▁The', '▁whale']);
    expect(tok.tokenize('🐋').filter((p) => p.startsWith('<0x')).length).toBe(4);
    expect(tok.encode('the', { bos: true })[0]).toBe(1);
    expect(tok.eosId).toBe(2);
  });

  it('refuses a vocabulary too small for the alphabet', () => {
    expect(() => trainBpe(corpus, { vocabSize: 100 })).toThrow(/vocabulary size 100 is smaller than/);
  });
});
