// The AdamW step and the gradients' squared norm over Float32Arrays, run by a
// small WebAssembly SIMD module (adamw.wat, assembled into adamw.wasm). Full
// fine-tuning of 125M updates 125 M floats per step; a JavaScript loop spends
// ~5–9 ns on each (scalar sqrt and division), four float32 lanes take ~1.
//
// The module has its own small memory: each tensor goes through it in chunks
// of CHUNK floats (p, g, m, v side by side, 256 KB, so the arithmetic works in
// cache), copied in, updated, and p, m, v copied back. The arrays themselves
// stay plain Float32Arrays (ONNX Runtime is fed them as they are).
import fs from 'node:fs';

/** Floats per chunk (a multiple of 4). */
const CHUNK = 16384;
const BYTES = CHUNK * 4;
const [P, G, M, V] = [0, BYTES, 2 * BYTES, 3 * BYTES];
const PAGE = 65536;

interface Exports {
  memory: WebAssembly.Memory;
  sumsq(g: number, n: number): number;
  adamw(p: number, g: number, m: number, v: number, n: number, ...scalars: number[]): void;
}

/** Scalars of one AdamW step (see adamw.wat for where each one goes). */
export interface AdamWScalars {
  /** Factor on the gradient (global-norm clipping), 1 for none. */
  gradScale: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** 1 − lr · weight_decay (1 where the tensor is not decayed). */
  keep: number;
  /** lr / (1 − β1ᵗ). */
  stepSize: number;
  /** √(1 − β2ᵗ). */
  bc2Sqrt: number;
}

let loaded: Exports | null = null;

function kernel(): Exports {
  if (!loaded) {
    const module = new WebAssembly.Module(fs.readFileSync(new URL('./adamw.wasm', import.meta.url)));
    loaded = new WebAssembly.Instance(module).exports as unknown as Exports;
    const need = Math.ceil((4 * BYTES) / PAGE) - loaded.memory.buffer.byteLength / PAGE;
    if (need > 0) loaded.memory.grow(need);
  }
  return loaded;
}

/** Σ g² over every array (float64 sums of float32 squares). */
export function sumOfSquares(arrays: Iterable<Float32Array>): number {
  const k = kernel();
  const g = new Float32Array(k.memory.buffer, G, CHUNK);
  let total = 0;
  for (const a of arrays) {
    for (let at = 0; at < a.length; at += CHUNK) {
      const n = Math.min(CHUNK, a.length - at);
      const padded = Math.ceil(n / 4) * 4;
      g.set(a.subarray(at, at + n));
      g.fill(0, n, padded);
      total += k.sumsq(G, padded);
    }
  }
  return total;
}

/** One AdamW step on p with gradient g and moments m, v (all of p's length), in place. */
export function adamwStep(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWScalars): void {
  const k = kernel();
  const buf = k.memory.buffer;
  const [wp, wg, wm, wv] = [P, G, M, V].map((at) => new Float32Array(buf, at, CHUNK));
  for (let at = 0; at < p.length; at += CHUNK) {
    const end = Math.min(p.length, at + CHUNK);
    const n = end - at;
    wp.set(p.subarray(at, end));
    wg.set(g.subarray(at, end));
    wm.set(m.subarray(at, end));
    wv.set(v.subarray(at, end));
    k.adamw(P, G, M, V, Math.ceil(n / 4) * 4, s.gradScale, 1 - s.beta1, s.beta2, 1 - s.beta2, s.bc2Sqrt, s.eps, s.keep, s.stepSize);
    p.set(wp.subarray(0, n), at);
    m.set(wm.subarray(0, n), at);
    v.set(wv.subarray(0, n), at);
  }
}
