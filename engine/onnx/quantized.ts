// Quantized weights (engine/quant) in the graph, kept integer: the codes are
// written into the model as they are, never as floats.
//
//   weight-only w8 / w4   MatMulNBits (com.microsoft): B uint8 [N, K/bs, bs·bits/8]
//                         holding unsigned codes (int8 code + 128; int4 code as is),
//                         per-block scales [N, K/bs] and zero points (128 for
//                         8 bits; the int4 zero points, two per byte). bs = the
//                         int4 group size; for per-channel int8, 32 (or 16) with
//                         the channel's scale repeated — the same numbers.
//   w8a8                  the activations quantized per token, asymmetric uint8
//                         min-max as engine/quant simulates it (QuantizeLinear with
//                         one scale and zero point per row), then MatMulInteger
//                         (uint8 × uint8 → int32) against the codes [K, N] stored
//                         as code + 128 with weight zero point 128, the activation
//                         zero point's term z·Σₖ codeₖₙ subtracted in int32, and
//                         one multiply by (row scale × channel scale). (uint8 ×
//                         int8 would be faster on VNNI, but on AVX2-only CPUs
//                         ONNX Runtime's u8s8 kernel sums pairs of products in
//                         int16, which saturates: logits off by ~15 %.)
//
// The plain operator set has no MatMulNBits: there the same uint8 blocks are
// dequantized with standard operators and multiplied in float (a reference
// that ONNX Runtime may constant-fold into float weights).
//
// The memory layout of engine/quant's codes ([in, out], int4 pairs along the
// input) and of MatMulNBits ([out, in]) differ by a transpose, done while the
// bytes are written into the serialized model.
import type { Int4Weight, Int8Weight, QuantizedWeight } from '../quant/codes';
import { DataType, type DeferredBytes } from './proto';
import { MS_DOMAIN, attr, type GraphBuilder } from './graph';

/**
 * MatMulNBits' arithmetic: 'int8' runs each weight width at the accuracy
 * level chosen for it below (what the chat serves); 'float32' multiplies the
 * dequantized weights in float (level 1: what TensorFlow.js computes, the
 * reference).
 */
export type NBitsCompute = 'int8' | 'float32';

/** The arithmetic `mlw generate` and the chat run quantized weights with (ExportOptions.nbitsCompute's default). */
export const SERVED_NBITS_COMPUTE: NBitsCompute = 'int8';

/** MatMulNBits' accuracy_level on the CPU: 0 (unset) = 1 = float32 arithmetic; 4 = activations quantized to int8 in the kernel. */
export type NBitsAccuracyLevel = 1 | 4;

/**
 * The level each weight width runs at for 'int8', chosen from measurements
 * (MobileLLM-125M shape, 2 AMD EPYC cores with AVX2, no VNNI; onnxruntime-node
 * 1.30; levels 0 and 2 compute exactly as level 1 here):
 *
 *   decode tokens/s     level 1   level 4
 *   w8 (blocks of 32)    3–4      86–93     level 1 has no fast 8-bit float kernel
 *   w4 (groups of 64)   71–75     98–124    level 1: 30–40 % slower
 *
 * Quality, the previously bundled 9.4M model on the held-out text (2,048 tokens): level 4
 * against the dequantized reference moves log-probs by 5.5e-3 on average
 * (w8; 6.5e-3 w4), 4.4e-2 at most (w8; 5.4e-2 w4), and perplexity by under
 * 0.02 % (212.075 → 212.064 w8, 212.576 → 212.536 w4). So both run at level
 * 4, and a weight-only model on ONNX Runtime is in effect W8A8-like: the
 * quantization report measures its perplexity on this arithmetic.
 */
export const NBITS_ACCURACY_LEVEL: Record<8 | 4, NBitsAccuracyLevel> = { 8: 4, 4: 4 };

export function nbitsAccuracyLevel(bits: 8 | 4, compute: NBitsCompute): NBitsAccuracyLevel {
  return compute === 'float32' ? 1 : NBITS_ACCURACY_LEVEL[bits];
}

/** What MatMulNBits computes, in words, e.g. "MatMulNBits accuracy level 4: activations quantized to int8 per block of 32 inputs". */
export function describeNBitsArithmetic(bits: 8 | 4, blockSize: number, compute: NBitsCompute): string {
  const level = nbitsAccuracyLevel(bits, compute);
  const what = level === 4 ? `activations quantized to int8 per block of ${blockSize} inputs (symmetric, in the kernel)` : 'float32 on the dequantized weights';
  return `MatMulNBits accuracy level ${level}: ${what}`;
}

/** Block size for per-channel int8 codes in MatMulNBits (a power of two ≥ 16 dividing K). */
export function int8BlockSize(K: number): number {
  const bs = [32, 16].find((b) => K % b === 0);
  if (bs === undefined) throw new Error(`input width ${K} is not a multiple of 16 (MatMulNBits blocks)`);
  return bs;
}

function checkFusable(ws: QuantizedWeight[], name: string): void {
  const a = ws[0];
  for (const w of ws) {
    if (w.bits !== a.bits || w.inFeatures !== a.inFeatures || (w.bits === 4 && a.bits === 4 && w.groupSize !== a.groupSize)) {
      throw new Error(`${name}: layers read by one kernel must share bits, input width and group size`);
    }
  }
}

/**
 * One or more quantized weights with the same input, their output channels
 * stacked (q|k|v, gate|up), as MatMulNBits blocks. Initializers are added on
 * first use, so a graph holds only the ones its operators read.
 */
export class NBitsWeight {
  readonly bits: 8 | 4;
  readonly K: number;
  readonly N: number;
  readonly blockSize: number;
  readonly blocks: number;
  private names: Partial<Record<'data' | 'scales' | 'zeros' | 'packedZeros', string>> = {};

  constructor(
    private readonly g: GraphBuilder,
    private readonly name: string,
    private readonly ws: QuantizedWeight[],
  ) {
    checkFusable(ws, name);
    const w0 = ws[0];
    this.bits = w0.bits;
    this.K = w0.inFeatures;
    this.N = ws.reduce((n, w) => n + w.outFeatures, 0);
    this.blockSize = w0.bits === 4 ? w0.groupSize : int8BlockSize(this.K);
    this.blocks = this.K / this.blockSize;
  }

  /** uint8 [N, K/bs, bs·bits/8] */
  private get data(): string {
    const blob = (this.blockSize * this.bits) / 8;
    this.names.data ??= this.g.initializer(`${this.name}.qweight`, DataType.UINT8, [this.N, this.blocks, blob], this.rowBytes());
    return this.names.data;
  }

  /** float [N, K/bs] */
  private get scales(): string {
    this.names.scales ??= this.g.floats(
      `${this.name}.scales`,
      [this.N, this.blocks],
      this.perBlock((w, j, b) => (w.bits === 8 ? w.scales[j] : w.scales[b * w.outFeatures + j]), Float32Array),
    );
    return this.names.scales;
  }

  /** Zero points per block for standard operators: uint8 [N, K/bs] for int4; int8 codes are centred on 128. */
  private get zeros(): string {
    if (this.bits === 8) return this.g.constant(DataType.UINT8, [128], true);
    this.names.zeros ??= this.g.initializer(`${this.name}.zeros`, DataType.UINT8, [this.N, this.blocks], this.zeroPoints());
    return this.names.zeros;
  }

  /** MatMulNBits' zero points: int4 packed two per byte (low nibble first), each row padded to whole bytes. */
  private get packedZeros(): string {
    if (!this.names.packedZeros) {
      const z = this.zeroPoints();
      const perRow = Math.ceil(this.blocks / 2);
      const packed = new Uint8Array(this.N * perRow);
      for (let n = 0; n < this.N; n++) {
        for (let b = 0; b < this.blocks; b++) packed[n * perRow + (b >> 1)] |= z[n * this.blocks + b] << (4 * (b & 1));
      }
      this.names.packedZeros = this.g.initializer(`${this.name}.zero_points`, DataType.UINT8, [packed.length], packed);
    }
    return this.names.packedZeros;
  }

  /** The int4 zero points, one per (row, block). */
  private zeroPoints(): Uint8Array {
    return this.perBlock((w, j, b) => (w as Int4Weight).zeros[b * w.outFeatures + j], Uint8Array);
  }

  /** A value per (output row, block), rows of the fused weights in order. */
  private perBlock<T extends Float32Array | Uint8Array>(value: (w: QuantizedWeight, j: number, b: number) => number, Out: { new (n: number): T }): T {
    const out = new Out(this.N * this.blocks);
    let row = 0;
    for (const w of this.ws) {
      for (let j = 0; j < w.outFeatures; j++, row++) {
        for (let b = 0; b < this.blocks; b++) out[row * this.blocks + b] = value(w, j, b);
      }
    }
    return out;
  }

  /** The codes transposed to rows of output channels: [in, out] → [out, in] (int4: [in/2, out] bytes → [out, in/2]). */
  private rowBytes(): DeferredBytes {
    const K = this.K;
    const rowLen = (K * this.bits) / 8;
    return {
      byteLength: this.N * rowLen,
      write: (dst) => {
        let row = 0;
        for (const w of this.ws) {
          const O = w.outFeatures;
          for (let j = 0; j < O; j++, row++) {
            const at = row * rowLen;
            if (w.bits === 8) for (let k = 0; k < K; k++) dst[at + k] = w.codes[k * O + j] + 128;
            else for (let k = 0; k < rowLen; k++) dst[at + k] = w.packed[k * O + j];
          }
        }
      },
    };
  }

  /** x [..., K] → [..., N] with MatMulNBits. */
  matMul(x: string, compute: NBitsCompute): string {
    const inputs = [x, this.data, this.scales, ...(this.bits === 4 ? [this.packedZeros] : [])];
    return this.g.op1(
      'MatMulNBits',
      inputs,
      {
        K: attr.int(this.K),
        N: attr.int(this.N),
        bits: attr.int(this.bits),
        block_size: attr.int(this.blockSize),
        accuracy_level: attr.int(nbitsAccuracyLevel(this.bits, compute)),
      },
      MS_DOMAIN,
    );
  }

  /**
   * Dequantizes with standard operators: every row, float [N, K]; or the rows
   * `ids` [B, T] (an embedding lookup), float [B, T, K].
   */
  dequantize(ids?: string): string {
    const g = this.g;
    const rows = (t: string) => (ids ? g.op1('Gather', [t, ids]) : t);
    const keep = Array(ids ? 2 : 1).fill(0); // leading dimensions
    const data = rows(this.data); // [..., K/bs, blob]
    let codes = data;
    if (this.bits === 4) {
      // byte = code(2k) | code(2k+1) << 4 → [..., K/bs, bs/2, 2] → [..., K/bs, bs]
      const lo = g.op1('BitwiseAnd', [data, g.constant(DataType.UINT8, [15], true)]);
      const hi = g.op1('BitShift', [data, g.constant(DataType.UINT8, [4], true)], { direction: attr.string('RIGHT') });
      const pairs = g.op1('Concat', [g.op1('Unsqueeze', [lo, g.int64([-1])]), g.op1('Unsqueeze', [hi, g.int64([-1])])], { axis: attr.int(-1) });
      codes = g.op1('Reshape', [pairs, g.int64([...keep, this.blocks, this.blockSize])]);
    }
    const asFloat = (v: string) => g.op1('Cast', [v], { to: attr.int(DataType.FLOAT) });
    const perBlock = (v: string) => g.op1('Unsqueeze', [v, g.int64([-1])]); // [..., K/bs, 1]
    const zeros = this.bits === 8 ? asFloat(this.zeros) : perBlock(asFloat(rows(this.zeros)));
    const centred = g.op1('Sub', [asFloat(codes), zeros]);
    return g.op1('Reshape', [g.op1('Mul', [centred, perBlock(rows(this.scales))]), g.int64([...keep, this.K])]);
  }
}

/**
 * Per-token asymmetric uint8 quantization of x [M, K], as engine/quant's
 * fakeQuantPerToken: lo = min(0, min x), hi = max(0, max x),
 * s = (hi − lo)/255 (1 for an all-zero row), z = round(−lo/s),
 * q = clamp(round(x/s) + z, 0, 255). Returns q [M, K] uint8, s [M, 1] float, z [M, 1] int32.
 */
function quantizePerToken(g: GraphBuilder, x: string): { q: string; scale: string; zero: string } {
  const lo = g.op1('Min', [g.op1('ReduceMin', [x, g.int64([-1])], { keepdims: attr.int(1) }), g.float(0)]);
  const hi = g.op1('Max', [g.op1('ReduceMax', [x, g.int64([-1])], { keepdims: attr.int(1) }), g.float(0)]);
  const range = g.op1('Sub', [hi, lo]);
  const scale = g.op1('Where', [g.op1('Greater', [range, g.float(0)]), g.op1('Div', [range, g.float(255)]), g.float(1)]);
  const z = g.op1('Round', [g.op1('Div', [g.op1('Neg', [lo]), scale])]);
  const flat = (v: string) => g.op1('Reshape', [v, g.int64([-1])]);
  const q = g.op1('QuantizeLinear', [x, flat(scale), g.op1('Cast', [flat(z)], { to: attr.int(DataType.UINT8) })], { axis: attr.int(0) });
  return { q, scale, zero: g.op1('Cast', [z], { to: attr.int(DataType.INT32) }) };
}

/** One or more int8 weights with the same input, columns side by side: codes [K, ΣN] as engine/quant holds them. */
export class W8A8Weight {
  readonly K: number;
  readonly N: number;
  private readonly codes: string;
  private readonly scales: string;
  private sums = '';

  constructor(
    private readonly g: GraphBuilder,
    private readonly name: string,
    private readonly ws: QuantizedWeight[],
  ) {
    checkFusable(ws, name);
    if (ws.some((w) => w.bits !== 8)) throw new Error(`${name}: w8a8 needs int8 weights`);
    this.K = ws[0].inFeatures;
    this.N = ws.reduce((n, w) => n + w.outFeatures, 0);
    const data: DeferredBytes = {
      byteLength: this.K * this.N,
      write: (dst) => {
        let col = 0;
        for (const w of this.int8()) {
          for (let k = 0; k < this.K; k++) {
            const row = w.codes.subarray(k * w.outFeatures, (k + 1) * w.outFeatures);
            for (let j = 0; j < row.length; j++) dst[k * this.N + col + j] = row[j] + 128;
          }
          col += w.outFeatures;
        }
      },
    };
    this.codes = g.initializer(`${name}.qweight`, DataType.UINT8, [this.K, this.N], data); // code + 128
    this.scales = g.floats(`${name}.scales`, [this.N], Float32Array.from(this.int8().flatMap((w) => [...w.scales])));
  }

  private int8(): Int8Weight[] {
    return this.ws as Int8Weight[];
  }

  /** Σₖ codeₖₙ per output channel, int32 [N]. */
  private get columnSums(): string {
    if (!this.sums) {
      const sums = new Int32Array(this.N);
      let col = 0;
      for (const w of this.int8()) {
        for (let k = 0; k < this.K; k++) for (let j = 0; j < w.outFeatures; j++) sums[col + j] += w.codes[k * w.outFeatures + j];
        col += w.outFeatures;
      }
      this.sums = this.g.initializer(`${this.name}.column_sums`, DataType.INT32, [this.N], new Uint8Array(sums.buffer));
    }
    return this.sums;
  }

  /** x [M, K] → [M, N]: per-token quantized activations times the int8 codes, in integers. */
  matMul(x: string): string {
    const g = this.g;
    const { q, scale, zero } = quantizePerToken(g, x);
    const acc = g.op1('MatMulInteger', [q, this.codes, '', g.constant(DataType.UINT8, [128], true)]); // Σₖ qₘₖ·cₖₙ, int32 [M, N]
    const centred = g.op1('Sub', [acc, g.op1('Mul', [zero, this.columnSums])]); // Σₖ (qₘₖ − zₘ)·cₖₙ
    const asFloat = g.op1('Cast', [centred], { to: attr.int(DataType.FLOAT) });
    return g.op1('Mul', [g.op1('Mul', [asFloat, scale]), this.scales]);
  }

  /** Columns `ids` [B, T] of the codes as rows: float [B, T, K] (the lookup of a [hidden, vocab] table). */
  gatherColumns(ids: string): string {
    const g = this.g;
    const cols = g.op1('Transpose', [g.op1('Gather', [this.codes, ids], { axis: attr.int(1) })], { perm: attr.ints([1, 2, 0]) }); // [B, T, K]
    const s = g.op1('Unsqueeze', [g.op1('Gather', [this.scales, ids]), g.int64([-1])]); // [B, T, 1]
    const codes = g.op1('Sub', [g.op1('Cast', [cols], { to: attr.int(DataType.FLOAT) }), g.float(128)]);
    return g.op1('Mul', [codes, s]);
  }
}
