// The model's weights in the graph, whatever they hold: float32 tensors, or
// engine/quant's integer codes (see quantized.ts). Layers that read the same
// input are fused into one weight with their outputs side by side (q|k|v,
// gate|up), so that one kernel reads the input once. Weight bytes are
// deferred: they are written straight into the serialized model.
import * as tf from '@tensorflow/tfjs';
import { DenseLinear, type Linear } from '../model/linear';
import { TokenEmbedding } from '../model/embedding';
import { QuantizedLinear } from '../quant/quantized-linear';
import { DataType, type DeferredBytes } from './proto';
import { attr, type GraphBuilder } from './graph';
import { NBitsWeight, W8A8Weight, type NBitsCompute } from './quantized';
import type { OnnxOps } from './mobilellm';

export interface WeightOptions {
  ops: OnnxOps;
  nbitsCompute: NBitsCompute;
}

/** Float32 bytes of a tensor, read when the model is serialized. */
export function tensorBytes(t: tf.Tensor): DeferredBytes {
  return {
    byteLength: t.size * 4,
    write(dst) {
      const v = t.dataSync() as Float32Array;
      dst.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    },
  };
}

/** Float32 bytes of the transpose of a 2-D tensor ([a, b] → [b, a]), transposed in JS (no backend memory). */
function transposedBytes(t: tf.Tensor2D): DeferredBytes {
  const [a, b] = t.shape;
  return {
    byteLength: t.size * 4,
    write(dst) {
      const v = t.dataSync() as Float32Array;
      const row = new Float32Array(a);
      const rowBytes = new Uint8Array(row.buffer);
      for (let j = 0; j < b; j++) {
        for (let i = 0; i < a; i++) row[i] = v[i * b + j];
        dst.set(rowBytes, j * a * 4);
      }
    },
  };
}

/** [in, out₁] … [in, outₙ] side by side: [in, Σ out]. */
function concatColumnBytes(ws: tf.Tensor2D[]): DeferredBytes {
  const rows = ws[0].shape[0];
  const width = ws.reduce((n, w) => n + w.shape[1], 0);
  return {
    byteLength: rows * width * 4,
    write(dst) {
      let col = 0;
      for (const w of ws) {
        const v = w.dataSync() as Float32Array;
        const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
        const rowBytes = w.shape[1] * 4;
        for (let r = 0; r < rows; r++) dst.set(bytes.subarray(r * rowBytes, (r + 1) * rowBytes), (r * width + col) * 4);
        col += w.shape[1];
      }
    },
  };
}

/** All dense, or all quantized alike: the kind of weight a fused group holds. */
function kindOf(layers: Linear[], name: string): 'dense' | 'weight-only' | 'w8a8' {
  const kinds = new Set(
    layers.map((l) => {
      if (l instanceof DenseLinear) return 'dense';
      if (l instanceof QuantizedLinear) return l.activations === 'int8-per-token' ? 'w8a8' : 'weight-only';
      throw new Error(`${name}: ${l.constructor.name} layers cannot be exported to ONNX`);
    }),
  );
  if (kinds.size > 1) throw new Error(`${name}: fused layers mix ${[...kinds].join(' and ')} weights`);
  return [...kinds][0] as 'dense' | 'weight-only' | 'w8a8';
}

const quantizedWeights = (layers: Linear[]) => layers.map((l) => (l as QuantizedLinear).weight);

/**
 * Adds the weight of `layers` (fused when more than one) under `name` and
 * returns the function that applies it: x [B, T, in] → [B, T, Σ out].
 */
export function linearOp(g: GraphBuilder, name: string, layers: Linear[], opts: WeightOptions): (x: string) => string {
  switch (kindOf(layers, name)) {
    case 'dense': {
      const ws = layers.map((l) => (l as DenseLinear).w);
      const data = ws.length === 1 ? tensorBytes(ws[0]) : concatColumnBytes(ws);
      const w = g.initializer(`${name}.weight`, DataType.FLOAT, [ws[0].shape[0], ws.reduce((n, t) => n + t.shape[1], 0)], data);
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
export function tableOps(g: GraphBuilder, name: string, table: Linear, opts: WeightOptions): TableOps {
  if (table instanceof TokenEmbedding) {
    const [hidden, vocab] = table.wT.shape;
    const w = g.initializer(`${name}.weight`, DataType.FLOAT, [vocab, hidden], transposedBytes(table.wT)); // [V, H]
    return {
      lookup: (ids) => g.op1('Gather', [w, ids]),
      head: (x) => g.op1('Gemm', [x, w], { transB: attr.int(1) }),
    };
  }
  const kind = kindOf([table], name);
  if (kind === 'w8a8') {
    const q = new W8A8Weight(g, name, quantizedWeights([table])); // codes [H, V]
    return { lookup: (ids) => q.gatherColumns(ids), head: (x) => q.matMul(x) };
  }
  if (kind !== 'weight-only') throw new Error(`${name}: a table must be a TokenEmbedding or quantized`);
  const nb = new NBitsWeight(g, name, quantizedWeights([table])); // rows = tokens: [V, H/bs, blob]
  return {
    lookup: (ids) => nb.dequantize(ids),
    head: (x) => (opts.ops === 'contrib' ? nb.matMul(x, opts.nbitsCompute) : g.op1('Gemm', [x, nb.dequantize()], { transB: attr.int(1) })),
  };
}
