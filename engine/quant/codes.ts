// Integer codes for weight matrices, in the model's [in, out] layout (row i =
// input feature, column j = output channel), and the way back to float32.
//
//   int8, per output channel, symmetric (w8, and the weights of w8a8):
//     s_j = max_i |w_ij| / 127        q_ij = round(w_ij / s_j) ∈ [-127, 127]
//     ŵ_ij = q_ij · s_j               |w_ij − ŵ_ij| ≤ s_j / 2
//   (−128 is never used, so that the range is symmetric around 0.)
//
//   int4, per output channel and per group of G consecutive input features,
//   asymmetric (w4): for group g = ⌊i / G⌋ of column j,
//     lo = min(0, min w), hi = max(0, max w)   (the range always holds 0)
//     s = (hi − lo) / 15     z = round(−lo / s) ∈ [0, 15]
//     q_ij = clamp(round(w_ij / s) + z, 0, 15)
//     ŵ_ij = (q_ij − z) · s                   |w_ij − ŵ_ij| ≤ s / 2
//   Two codes per byte, paired along the input dimension: the byte for inputs
//   (2k, 2k+1) of column j holds input 2k in its LOW nibble and 2k+1 in its
//   HIGH nibble (the order GPTQ and AWQ use). In memory the bytes are
//   [in/2, out]; in the file they are the transpose, [out, in/2] (see
//   checkpoint.ts) — the byte values are the same.
//
// Rounding is half up, ⌊v + ½⌋ (as Math.round, which V8 runs several times
// slower). A scale of 0 (an all-zero channel or group) gives codes that
// dequantize to 0.

export interface Int8Weight {
  readonly bits: 8;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** [in, out] */
  readonly codes: Int8Array;
  /** [out] */
  readonly scales: Float32Array;
}

export interface Int4Weight {
  readonly bits: 4;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly groupSize: number;
  /** [in/2, out], low nibble = even input row. */
  readonly packed: Uint8Array;
  /** [in/G, out] */
  readonly scales: Float32Array;
  /** [in/G, out], zero points 0…15. */
  readonly zeros: Uint8Array;
}

export type QuantizedWeight = Int8Weight | Int4Weight;

/** Bytes the codes, scales and zero points take. */
export function codeBytes(q: QuantizedWeight): number {
  return q.bits === 8 ? q.codes.byteLength + q.scales.byteLength : q.packed.byteLength + q.scales.byteLength + q.zeros.byteLength;
}

/** w [in, out] (row-major) → int8 codes with one scale per output channel. */
export function quantizeInt8(w: Float32Array, inFeatures: number, outFeatures: number): Int8Weight {
  checkSize(w, inFeatures, outFeatures);
  const O = outFeatures;
  const scales = new Float32Array(O);
  for (let i = 0; i < inFeatures; i++) {
    for (let j = 0; j < O; j++) {
      const a = Math.abs(w[i * O + j]);
      if (a > scales[j]) scales[j] = a;
    }
  }
  for (let j = 0; j < O; j++) scales[j] = scales[j] / 127;
  const codes = new Int8Array(inFeatures * O);
  for (let i = 0; i < inFeatures; i++) {
    for (let j = 0; j < O; j++) {
      const s = scales[j];
      codes[i * O + j] = s > 0 ? Math.max(-127, Math.min(127, Math.floor(w[i * O + j] / s + 0.5))) : 0;
    }
  }
  return { bits: 8, inFeatures, outFeatures, codes, scales };
}

/** w [in, out] → int4 codes, asymmetric, one scale and zero point per (group of G inputs, output channel). */
export function quantizeInt4(w: Float32Array, inFeatures: number, outFeatures: number, groupSize: number): Int4Weight {
  checkSize(w, inFeatures, outFeatures);
  if (inFeatures % groupSize !== 0) throw new Error(`group size ${groupSize} does not divide the input width ${inFeatures}`);
  const O = outFeatures;
  const groups = inFeatures / groupSize;
  const scales = new Float32Array(groups * O);
  const zeros = new Uint8Array(groups * O);
  const codes = new Uint8Array(inFeatures * O);
  const lo = new Float32Array(O);
  const hi = new Float32Array(O);
  for (let g = 0; g < groups; g++) {
    lo.fill(0);
    hi.fill(0);
    const i0 = g * groupSize;
    for (let i = i0; i < i0 + groupSize; i++) {
      for (let j = 0; j < O; j++) {
        const v = w[i * O + j];
        if (v < lo[j]) lo[j] = v;
        if (v > hi[j]) hi[j] = v;
      }
    }
    for (let j = 0; j < O; j++) {
      const s = (hi[j] - lo[j]) / 15;
      scales[g * O + j] = s;
      zeros[g * O + j] = s > 0 ? Math.max(0, Math.min(15, Math.floor(-lo[j] / scales[g * O + j] + 0.5))) : 0;
    }
    for (let i = i0; i < i0 + groupSize; i++) {
      for (let j = 0; j < O; j++) {
        const s = scales[g * O + j];
        const z = zeros[g * O + j];
        codes[i * O + j] = s > 0 ? Math.max(0, Math.min(15, Math.floor(w[i * O + j] / s + 0.5) + z)) : z;
      }
    }
  }
  return { bits: 4, inFeatures, outFeatures, groupSize, packed: packInt4(codes, inFeatures, O), scales, zeros };
}

/** Codes 0…15 [rows, cols] → bytes [rows/2, cols]: row 2k in the low nibble, row 2k+1 in the high nibble. */
export function packInt4(codes: Uint8Array, rows: number, cols: number): Uint8Array {
  if (rows % 2 !== 0) throw new Error(`int4 packing pairs input features: the input width must be even, got ${rows}`);
  if (codes.length !== rows * cols) throw new Error(`int4 packing: ${codes.length} codes for a ${rows}×${cols} matrix`);
  const out = new Uint8Array((rows / 2) * cols);
  for (let k = 0; k < rows / 2; k++) {
    for (let j = 0; j < cols; j++) {
      const low = codes[2 * k * cols + j];
      const high = codes[(2 * k + 1) * cols + j];
      if (low > 15 || high > 15) throw new Error(`int4 packing: code ${Math.max(low, high)} does not fit in 4 bits`);
      out[k * cols + j] = low | (high << 4);
    }
  }
  return out;
}

/** ŵ [in, out] written into `out` (allocated when not given). The hot loop of every quantized matmul. */
export function dequantize(q: QuantizedWeight, out = new Float32Array(q.inFeatures * q.outFeatures)): Float32Array {
  const O = q.outFeatures;
  if (q.bits === 8) {
    const { codes, scales } = q;
    for (let i = 0; i < q.inFeatures; i++) {
      const row = i * O;
      for (let j = 0; j < O; j++) out[row + j] = codes[row + j] * scales[j];
    }
    return out;
  }
  const { packed, scales, zeros, groupSize } = q;
  for (let k = 0; k < q.inFeatures / 2; k++) {
    const g = ((2 * k) / groupSize) | 0; // both rows of a pair are in one group (G is even)
    const even = 2 * k * O;
    const odd = even + O;
    for (let j = 0; j < O; j++) {
      const b = packed[k * O + j];
      const s = scales[g * O + j];
      const z = zeros[g * O + j];
      out[even + j] = ((b & 15) - z) * s;
      out[odd + j] = ((b >> 4) - z) * s;
    }
  }
  return out;
}

/**
 * y = x · ŵ for a few rows of x, straight from the codes (no float weight is
 * built): x [rows, in] → y [rows, out], accumulated in float64.
 *   int8: y_j = s_j · Σ_i x_i q_ij
 *   int4: y_j = Σ_g s_gj · (Σ_{i∈g} x_i q_ij − z_gj · Σ_{i∈g} x_i)
 * Scalar single-threaded JS: on two cores about a third of the speed of
 * XNNPACK's float32 matmul (bench/quant.bench.ts), but no float copy of the
 * weights exists. Input rows are taken four at a time (int4: two bytes of one
 * column), which halves the passes over the accumulators.
 */
export function matvec(q: QuantizedWeight, x: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows * q.outFeatures);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * q.inFeatures, (r + 1) * q.inFeatures);
    const yr = y.subarray(r * q.outFeatures, (r + 1) * q.outFeatures);
    if (q.bits === 8) matvecInt8(q.codes, q.scales, xr, yr);
    else matvecInt4(q.packed, q.scales, q.zeros, q.groupSize, xr, yr);
  }
  return y;
}

// (Separate monomorphic loops over plain typed arrays: V8 compiles each tightly.)
function matvecInt8(codes: Int8Array, scales: Float32Array, x: Float32Array, y: Float32Array): void {
  const I = x.length;
  const O = y.length;
  const acc = new Float64Array(O);
  let i = 0;
  for (; i + 4 <= I; i += 4) {
    const x0 = x[i];
    const x1 = x[i + 1];
    const x2 = x[i + 2];
    const x3 = x[i + 3];
    const r0 = i * O;
    const r1 = r0 + O;
    const r2 = r1 + O;
    const r3 = r2 + O;
    for (let j = 0; j < O; j++) acc[j] += x0 * codes[r0 + j] + x1 * codes[r1 + j] + x2 * codes[r2 + j] + x3 * codes[r3 + j];
  }
  for (; i < I; i++) {
    const xi = x[i];
    for (let j = 0; j < O; j++) acc[j] += xi * codes[i * O + j];
  }
  for (let j = 0; j < O; j++) y[j] = acc[j] * scales[j];
}

function matvecInt4(packed: Uint8Array, scales: Float32Array, zeros: Uint8Array, G: number, x: Float32Array, y: Float32Array): void {
  const I = x.length;
  const O = y.length;
  const acc = new Float64Array(O);
  const inGroup = new Float64Array(O);
  for (let g = 0; g < I / G; g++) {
    inGroup.fill(0);
    let xSum = 0;
    for (let k = (g * G) / 2; k < ((g + 1) * G) / 2; k += 2) {
      const x0 = x[2 * k];
      const x1 = x[2 * k + 1];
      const x2 = x[2 * k + 2];
      const x3 = x[2 * k + 3];
      xSum += x0 + x1 + x2 + x3;
      const r0 = k * O;
      const r1 = r0 + O;
      for (let j = 0; j < O; j++) {
        const b = packed[r0 + j];
        const c = packed[r1 + j];
        inGroup[j] += x0 * (b & 15) + x1 * (b >> 4) + x2 * (c & 15) + x3 * (c >> 4);
      }
    }
    for (let j = 0; j < O; j++) acc[j] += scales[g * O + j] * (inGroup[j] - zeros[g * O + j] * xSum);
  }
  for (let j = 0; j < O; j++) y[j] = acc[j];
}

/** Columns `cols` of ŵ as rows: [cols.length, in] (the embedding lookup of a quantized [hidden, vocab] table). */
export function dequantizeColumns(q: QuantizedWeight, cols: ArrayLike<number>): Float32Array {
  const I = q.inFeatures;
  const O = q.outFeatures;
  const out = new Float32Array(cols.length * I);
  for (let n = 0; n < cols.length; n++) {
    const j = cols[n];
    if (!(j >= 0 && j < O)) throw new Error(`column ${j} is outside 0…${O - 1}`);
    for (let i = 0; i < I; i++) {
      if (q.bits === 8) {
        out[n * I + i] = q.codes[i * O + j] * q.scales[j];
      } else {
        const b = q.packed[(i >> 1) * O + j];
        const code = i & 1 ? b >> 4 : b & 15;
        const g = (i / q.groupSize) | 0;
        out[n * I + i] = (code - q.zeros[g * O + j]) * q.scales[g * O + j];
      }
    }
  }
  return out;
}

function checkSize(w: Float32Array, inFeatures: number, outFeatures: number): void {
  if (w.length !== inFeatures * outFeatures) throw new Error(`${w.length} weights for a ${inFeatures}×${outFeatures} matrix`);
}
