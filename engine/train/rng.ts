// Randomness in training is counter-based: every random draw is a pure function
// of (run seed, what it is for, step, …), never the state of a generator that
// has to be carried along. So a run resumed at step s shuffles, drops out and
// initializes exactly like an uninterrupted one, and its "RNG state" is just
// the seed and the counters it already saves (epoch, step).
import { seededRandom } from '../generate/sampling';

/** A 32-bit hash of a list of integers (murmur3's finalizer over a running mix). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** Purposes, so that the draws for different things never coincide. */
export const RNG = { shuffle: 1, split: 2, loraInit: 3, dropout: 4, pack: 5 } as const;

/** A uniform [0, 1) generator for one purpose (mulberry32 seeded with mixSeed(parts)). */
export function rngFor(...parts: number[]): () => number {
  return seededRandom(mixSeed(...parts));
}

/** Fisher–Yates permutation of 0 … n−1. */
export function permutation(n: number, random: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
