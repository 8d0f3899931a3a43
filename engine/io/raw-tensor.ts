// A tensor as stored in a file: dtype, shape and little-endian bytes. Every
// checkpoint reader (safetensors, pytorch .bin) produces these; conversion to
// float32 for computing happens in one place, here.

export const DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;

export type DType = keyof typeof DTYPE_BYTES;

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export interface RawTensor {
  dtype: DType;
  shape: number[];
  /** Exactly numel(shape) * DTYPE_BYTES[dtype] bytes, little-endian. */
  data: Uint8Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let halfTable: Float32Array | null = null;

/** float16 → float32 through a 64k-entry table (exact). */
function f16ToF32(src: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = halfTable[src[i]];
  return out;
}

/** bfloat16 is the top half of a float32: shift it back (exact). */
function bf16ToF32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return new Float32Array(bits.buffer);
}

/** Aligned typed view of the bytes (copies only when the bytes are unaligned). */
function view<T>(t: RawTensor, make: (b: ArrayBufferLike, off: number, n: number) => T, width: number): T {
  const n = t.data.byteLength / width;
  if (t.data.byteOffset % width === 0) return make(t.data.buffer, t.data.byteOffset, n);
  return make(t.data.slice().buffer, 0, n);
}

/** Float32 values of a floating-point tensor (float16/bfloat16/float64 are converted). */
export function toFloat32(t: RawTensor, name = 'tensor'): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return view(t, (b, o, n) => new Float32Array(b, o, n), 4);
    case 'F16':
      return f16ToF32(view(t, (b, o, n) => new Uint16Array(b, o, n), 2));
    case 'BF16':
      return bf16ToF32(view(t, (b, o, n) => new Uint16Array(b, o, n), 2));
    case 'F64':
      return Float32Array.from(view(t, (b, o, n) => new Float64Array(b, o, n), 8));
    default:
      throw new Error(`${name}: expected a floating-point tensor, got dtype ${t.dtype}`);
  }
}

/**
 * Float32 values of a checkpoint's weight (toFloat32), refused if one is NaN
 * or ±Inf: a model computes NaN from it, and a load is the place to say which
 * tensor of which file. One pass over the converted values: x·0 is 0 for
 * every finite x and NaN otherwise, so the sum is NaN exactly when one is off.
 */
export function finiteFloat32(t: RawTensor, file: string, name: string): Float32Array {
  const values = toFloat32(t, `${file}: ${name}`);
  let probe = 0;
  for (let i = 0; i < values.length; i++) probe += values[i] * 0;
  if (Number.isNaN(probe)) {
    const i = values.findIndex((x) => !Number.isFinite(x));
    throw new Error(`${file}: tensor "${name}" holds ${values[i]} (element ${i} of ${values.length}); a checkpoint's weights must be finite`);
  }
  return values;
}

/** float32 → float16 bits, round to nearest even (for saving float16 checkpoints). */
export function f32ToF16Bits(values: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00; // overflow → inf
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign; // underflow → ±0
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

export function float32Raw(values: Float32Array, shape: number[]): RawTensor {
  return { dtype: 'F32', shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** A float32 tensor held in JavaScript, row-major. */
export interface ArrayTensor {
  values: Float32Array;
  shape: number[];
}

/** A row-major [rows, cols] matrix transposed: [cols, rows]. */
export function transposed(v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = v[r * cols + c];
  return out;
}
