// The ggml tensor types our GGUF files hold, and their block quantizers,
// following ggml's reference rows (quantize_row_q8_0_ref, quantize_row_q4_0_ref):
//
//   F32    4 bytes a value
//   F16    2 bytes a value (IEEE half, round to nearest even)
//   Q8_0   blocks of 32 consecutive values along ne[0], 34 bytes each:
//            f16 d = amax / 127, then 32 × int8 q = round(x / d)  (half away from zero)
//            x̂ = q · d                    |x − x̂| ≤ d / 2 (+ the f16 rounding of d)
//   Q4_0   blocks of 32, 18 bytes each: with m the value of largest |x|
//            (the first one on ties), f16 d = m / −8, then 16 bytes: the low
//            nibble of byte j is q[j], the high nibble q[j+16], where
//            q = min(15, trunc(x / d + 8.5)) ∈ 0…15
//            x̂ = (q − 8) · d              |x − x̂| ≤ |d| / 2, except that m itself maps to
//                                          q = 0 exactly and a value of −m clips to 15 (error |d|)
//
// Every product and sum is rounded to float32 as ggml's C computes it, so the
// codes are the ones llama.cpp's own quantizer writes (test/gguf-quant.test.ts).
import { f32ToF16Bits, toFloat32 } from '../io/raw-tensor';

export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, blockBytes: 4 },
  F16: { id: 1, blockSize: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
} as const;
export type GgmlType = keyof typeof GGML_TYPES;

/** Bytes of a tensor of `type` and shape `ne` (ggml order); ne[0] must fill whole blocks. */
export function ggmlTypeBytes(type: GgmlType, ne: readonly number[], name: string): number {
  const { blockSize, blockBytes } = GGML_TYPES[type];
  if (ne.length === 0 || ne[0] % blockSize !== 0) throw new Error(`tensor "${name}": ${type} needs ne[0] (${ne[0]}) to be a multiple of ${blockSize}`);
  return (ne.reduce((a, b) => a * b, 1) / blockSize) * blockBytes;
}

const f32 = Math.fround;

/** Every half-precision bit pattern as float32, for decoding block scales. */
let halfTable: Float32Array | null = null;
function halfToFloat(bits: number): number {
  if (!halfTable) {
    const all = new Uint16Array(65536).map((_, i) => i);
    halfTable = toFloat32({ dtype: 'F16', shape: [65536], data: new Uint8Array(all.buffer) });
  }
  return halfTable[bits];
}

/** float32 → its f16 bits and the float32 the bits stand for. */
function toHalf(x: number): number {
  return f32ToF16Bits(new Float32Array([x]))[0];
}

function checkBlocks(n: number, what: string): number {
  if (n % 32 !== 0) throw new Error(`${what}: ${n} values do not fill blocks of 32`);
  return n / 32;
}

/** x (a multiple of 32 values) → Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = checkBlocks(x.length, 'Q8_0');
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const base = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = f32(amax / 127);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(b * 34, toHalf(d), true);
    for (let j = 0; j < 32; j++) {
      const v = f32(x[base + j] * id);
      const q = Math.sign(v) * Math.floor(Math.abs(v) + 0.5); // roundf: half away from zero
      view.setInt8(b * 34 + 2 + j, q);
    }
  }
  return out;
}

export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = checkBlocks(n, 'Q8_0');
  if (bytes.byteLength !== nb * 34) throw new Error(`Q8_0: ${bytes.byteLength} bytes for ${n} values (expected ${nb * 34})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < nb; b++) {
    const d = halfToFloat(view.getUint16(b * 34, true));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = view.getInt8(b * 34 + 2 + j) * d;
  }
  return out;
}

/** x (a multiple of 32 values) → Q4_0 blocks. */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = checkBlocks(x.length, 'Q4_0');
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  const code = (v: number, id: number) => Math.min(15, Math.trunc(f32(f32(v * id) + 8.5)));
  for (let b = 0; b < nb; b++) {
    const base = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[base + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(b * 18, toHalf(d), true);
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = code(x[base + j], id) | (code(x[base + 16 + j], id) << 4);
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = checkBlocks(n, 'Q4_0');
  if (bytes.byteLength !== nb * 18) throw new Error(`Q4_0: ${bytes.byteLength} bytes for ${n} values (expected ${nb * 18})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < nb; b++) {
    const d = halfToFloat(view.getUint16(b * 18, true));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[b * 18 + 2 + j];
      out[b * 32 + j] = ((byte & 15) - 8) * d;
      out[b * 32 + 16 + j] = ((byte >> 4) - 8) * d;
    }
  }
  return out;
}

/** float32 values → the bytes of a tensor of `type`. */
export function encodeTensor(values: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F16':
      return new Uint8Array(f32ToF16Bits(values).buffer);
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
  }
}

/** The bytes of a tensor of `type` holding `n` values → float32. */
export function decodeTensor(bytes: Uint8Array, type: GgmlType, n: number): Float32Array {
  switch (type) {
    case 'F32':
    case 'F16': {
      const width = GGML_TYPES[type].blockBytes;
      if (bytes.byteLength !== n * width) throw new Error(`${type}: ${bytes.byteLength} bytes for ${n} values (expected ${n * width})`);
      return toFloat32({ dtype: type, shape: [n], data: bytes }).slice();
    }
    case 'Q8_0':
      return dequantizeQ8_0(bytes, n);
    case 'Q4_0':
      return dequantizeQ4_0(bytes, n);
  }
}
