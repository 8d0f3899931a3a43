// The model's weights in the graph, whatever they hold: float32 tensors, or
// engine/quant's integer codes (see quantized.ts). Layers that read the same
// input are fused into one weight with their outputs side by side (q|k|v,
// gate|up), so that one kernel reads the input once. Weight bytes are
// deferred: they are written straight into the serialized model.
import { QuantizedLinear } from '../quant/quantized-linear';
import { DataType, type DeferredBytes } from './proto';
import { attr, type GraphBuilder } from './graph';
import { NBitsWeight, W8A8Weight, type NBitsCompute } from './quantized';
import type { FloatParam, WeightParam } from './params';
import type { OnnxOps } from './mobilellm';

export interface WeightOptions {
  ops: OnnxOps;
  nbitsCompute: NBitsCompute;
}

const asBytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** Float32 bytes of a parameter, read when the model is serialized. */
export function paramBytes(p: FloatParam): DeferredBytes {
  return {
    byteLength: p.shape.reduce((n, d) => n * d, 4),
    write: (dst) => dst.set(asBytes(p.values())),
  };
}

/** Float32 bytes of the transpose of a 2-D parameter ([a, b] → [b, a]), transposed row by row. */
function transposedBytes(p: FloatParam): DeferredBytes {
  const [a, b] = p.shape;
  return {
    byteLength: a * b * 4,
    write(dst) {
      const v = p.values();
      const row = new Float32Array(a);
      for (let j = 0; j < b; j++) {
        for (let i = 0; i < a; i++) row[i] = v[i * b + j];
        dst.set(asBytes(row), j * a * 4);
      }
    },
  };
}

/** [in, out₁] … [in, outₙ] side by side: [in, Σ out]. */
function concatColumnBytes(ps: FloatParam[]): DeferredBytes {
  const rows = ps[0].shape[0];
  const width = ps.reduce((n, p) => n + p.shape[1], 0);
  return {
    byteLength: rows * width * 4,
    write(dst) {
      let col = 0;
      for (const p of ps) {
        const bytes = asBytes(p.values());
        const rowBytes = p.shape[1] * 4;
        for (let r = 0; r < rows; r++) dst.set(bytes.subarray(r * rowBytes, (r + 1) * rowBytes), (r * width + col) * 4);
        col += p.shape[1];
      }
    },
  };
}

/** All float, or all quantized alike: the kind of weight a fused group holds. */
function kindOf(params: WeightParam[], name: string): 'float' | 'weight-only' | 'w8a8' {
  const kinds = new Set(params.map((p) => (p instanceof QuantizedLinear ? (p.activations === 'int8-per-token' ? 'w8a8' : 'weight-only') : 'float')));
  if (kinds.size > 1) throw new Error(`${name}: fused layers mix ${[...kinds].join(' and ')} weights`);
  return [...kinds][0] as 'float' | 'weight-only' | 'w8a8';
}

const quantizedWeights = (params: WeightParam[]) => params.map((p) => (p as QuantizedLinear).weight);

/**
 * Adds the weight of `layers` (fused when more than one) under `name` and
 * returns the function that applies it: x [B, T, in] → [B, T, Σ out].
 */
export function linearOp(g: GraphBuilder, name: string, layers: WeightParam[], opts: WeightOptions): (x: string) => string {
  switch (kindOf(layers, name)) {
    case 'float': {
      const ps = layers as FloatParam[];
      const data = ps.length === 1 ? paramBytes(ps[0]) : concatColumnBytes(ps);
      const w = g.initializer(`${name}.weight`, DataType.FLOAT, [ps[0].shape[0], ps.reduce((n, p) => n + p.shape[1], 0)], data);
      return (x) => g.op1('MatMul', [x, w]);
    }
    case 'weight-only': {
      const nb = new NBitsWeight(g, name, quantizedWeights(layers));
      if (opts.ops === 'contrib') return (x) => nb.matMul(x, opts.nbitsCompute);
      // Plain operators: dequantize [N, K], multiply by its transpose.
      const w = g.op1('Transpose', [nb.dequantize()], { perm: attr.ints([1, 0]) });
      return (x) => g.op1('MatMul', [x, w]);
    }
    case 'w8a8': {
      const q = new W8A8Weight(g, name, quantizedWeights(layers));
      return (x) => {
        // Per-token quantization works on rows: [B, T, K] → [B·T, K] → [B·T, N] → [B, T, N]
        const y = q.matMul(g.op1('Reshape', [x, g.int64([-1, q.K])]));
        const shape = g.op1('Concat', [g.op1('Shape', [x], { end: attr.int(-1) }), g.int64([q.N])], { axis: attr.int(0) });
        return g.op1('Reshape', [y, shape]);
      };
    }
  }
}

/** A [hidden, vocab] table: the token embedding, the output head, or both (shared). */
export interface TableOps {
  /** ids [B, T] int64 → [B, T, hidden] */
  lookup(ids: string): string;
  /** x [M, hidden] → logits [M, vocab] */
  head(x: string): string;
}

/**
 * Adds a table under `name` (e.g. model.embed_tokens). A float table is
 * stored [vocab, hidden]: Gather reads rows and the head is Gemm(transB=1) on
 * the same initializer. Quantized tables keep their codes; lookups dequantize
 * only the gathered rows.
 */
export function tableOps(g: GraphBuilder, name: string, table: WeightParam, opts: WeightOptions): TableOps {
  const kind = kindOf([table], name);
  if (kind === 'float') {
    const [hidden, vocab] = (table as FloatParam).shape; // held [H, V]
    const w = g.initializer(`${name}.weight`, DataType.FLOAT, [vocab, hidden], transposedBytes(table as FloatParam)); // [V, H]
    return {
      lookup: (ids) => g.op1('Gather', [w, ids]),
      head: (x) => g.op1('Gemm', [x, w], { transB: attr.int(1) }),
    };
  }
  if (kind === 'w8a8') {
    const q = new W8A8Weight(g, name, quantizedWeights([table])); // codes [H, V]
    return { lookup: (ids) => q.gatherColumns(ids), head: (x) => q.matMul(x) };
  }
  const nb = new NBitsWeight(g, name, quantizedWeights([table])); // rows = tokens: [V, H/bs, blob]
  return {
    lookup: (ids) => nb.dequantize(ids),
    head: (x) => (opts.ops === 'contrib' ? nb.matMul(x, opts.nbitsCompute) : g.op1('Gemm', [x, nb.dequantize()], { transB: attr.int(1) })),
  };
}
