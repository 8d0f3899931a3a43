// The charts' axes that count things (steps, layers, blocks) tick at whole
// numbers only, even when the range is short or starts between two of them.
import { describe, expect, it } from 'vitest';
import { integerTicks } from '../renderer/src/lib/ticks';

describe('integer ticks', () => {
  it('a short range ticks at every whole number, never between', () => {
    expect(integerTicks(0.5, 3.5)).toEqual([1, 2, 3]);
    expect(integerTicks(1, 2, 10)).toEqual([1, 2]);
    expect(integerTicks(0.2, 0.8)).toEqual([]);
  });

  it('a long range ticks at 1-2-5 steps, about as many as asked', () => {
    expect(integerTicks(0, 1000, 5)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(integerTicks(3, 47, 4)).toEqual([10, 20, 30, 40]);
    expect(integerTicks(-0.4, 29.6, 6)).toEqual([0, 5, 10, 15, 20, 25]);
  });

  it('every tick is an integer for any range', () => {
    for (const [min, max] of [
      [0, 7],
      [1.3, 9.9],
      [12, 13],
      [0, 123_457],
    ]) {
      for (const target of [1, 3, 8, 20]) expect(integerTicks(min, max, target).every(Number.isInteger)).toBe(true);
    }
  });
});
