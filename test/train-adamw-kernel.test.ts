// The WebAssembly AdamW kernel (engine/train/adamw.wat → adamw.wasm): the
// committed binary is the text assembled, and its step equals float32
// arithmetic done one operation at a time (torch's order), across chunk
// boundaries and lengths that are not a multiple of four lanes.
import fs from 'node:fs';
import wabtInit from 'wabt';
import { describe, expect, it } from 'vitest';
import { adamwStep, sumOfSquares, type AdamWScalars } from '../engine/train/adamw-kernel';
import { rngFor } from '../engine/train/rng';

const f = Math.fround;

function reference(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWScalars): void {
  const [c1, c2] = [f(1 - s.beta1), f(1 - s.beta2)];
  for (let i = 0; i < p.length; i++) {
    const gi = f(g[i] * f(s.gradScale));
    m[i] = f(m[i] + f(c1 * f(gi - m[i])));
    v[i] = f(f(v[i] * f(s.beta2)) + f(f(c2 * gi) * gi));
    const denom = f(f(f(Math.sqrt(v[i])) / f(s.bc2Sqrt)) + f(s.eps));
    p[i] = f(f(p[i] * f(s.keep)) - f(f(s.stepSize) * f(m[i] / denom)));
  }
}

function randomArray(n: number, seed: number, scale: number): Float32Array {
  const random = rngFor(seed, 0, 0);
  return Float32Array.from({ length: n }, () => (random() - 0.5) * scale);
}

describe('AdamW kernel', () => {
  it('adamw.wasm is adamw.wat assembled', async () => {
    const wabt = await wabtInit();
    const text = fs.readFileSync(new URL('../engine/train/adamw.wat', import.meta.url), 'utf8');
    const assembled = wabt.parseWat('adamw.wat', text, { simd: true }).toBinary({}).buffer;
    expect(Buffer.from(assembled).equals(fs.readFileSync(new URL('../engine/train/adamw.wasm', import.meta.url)))).toBe(true);
  });

  it.each([1, 7, 16384, 2 * 16384 + 3])('three steps on %i floats equal float32 arithmetic bit for bit', (n) => {
    const ours = [randomArray(n, 1, 2), new Float32Array(n), new Float32Array(n)];
    const ref = ours.map((a) => a.slice());
    for (let t = 1; t <= 3; t++) {
      const g = randomArray(n, 10 + t, 0.02);
      const s: AdamWScalars = {
        gradScale: t === 2 ? 0.37 : 1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        keep: 1 - 1e-3 * 0.1,
        stepSize: 1e-3 / (1 - 0.9 ** t),
        bc2Sqrt: Math.sqrt(1 - 0.999 ** t),
      };
      adamwStep(ours[0], g, ours[1], ours[2], s);
      reference(ref[0], g, ref[1], ref[2], s);
    }
    for (let k = 0; k < 3; k++) expect(Buffer.from(ours[k].buffer).equals(Buffer.from(ref[k].buffer)), ['p', 'm', 'v'][k]).toBe(true);
    expect(ours[0].some((x, i) => x !== randomArray(n, 1, 2)[i])).toBe(true);
  });

  it('sums squares over arrays of any length', () => {
    const arrays = [randomArray(5, 3, 1), randomArray(16384 + 1, 4, 1), new Float32Array(0)];
    const want = arrays.reduce((s, a) => s + a.reduce((t, x) => t + f(x * x), 0), 0);
    expect(Math.abs(sumOfSquares(arrays) - want) / want).toBeLessThan(1e-12);
  });
});
