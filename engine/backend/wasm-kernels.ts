// Kernels the tfjs wasm backend lacks or runs slowly, registered for 'wasm'.
//
// - UnsortedSegmentSum: missing; the gradient of tf.gather (embedding lookup)
//   needs it, so without it nothing can train on wasm.
// - BatchMatMul: tfjs-backend-wasm sends only the plain case
//   (batch 1, no transposes) to XNNPACK; transposed or batched products fall to
//   a scalar triple loop about 15× slower. Gradients of every matMul are
//   transposed products, and attention is batched, so we route every case to
//   XNNPACK: transpose operands physically, fold a broadcast weight into the
//   rows, and loop over batches that must stay separate.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type TensorInfo = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
type KernelFn = (args: KernelArgs) => TensorInfo | TensorInfo[];

const BACKEND = 'wasm';

function kernel(name: string): KernelFn {
  return tf.getKernel(name, BACKEND).kernelFunc as unknown as KernelFn;
}

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const wasm = backend as BackendWasm;
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const numSegments = (attrs as { numSegments: number }).numSegments;
  if (x.dtype !== 'float32') throw new Error(`UnsortedSegmentSum on wasm supports float32, got ${x.dtype}`);
  const nIds = segmentIds.shape.reduce((p, d) => p * d, 1);
  const inner = x.shape.slice(segmentIds.shape.length).reduce((p, d) => p * d, 1);
  const out = wasm.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], 'float32');
  // Views into the wasm heap; taken after makeOutput, which may grow the heap.
  const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
  const xs = wasm.typedArrayFromHeap(x) as Float32Array;
  const ys = wasm.typedArrayFromHeap(out) as Float32Array;
  ys.fill(0);
  for (let i = 0; i < nIds; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // TF semantics: out-of-range ids are dropped
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) ys[dst + j] += xs[src + j];
  }
  return out;
}

function makeFastBatchMatMul(plain: KernelFn): KernelFn {
  const transpose = kernel('Transpose');
  return ({ inputs, backend, attrs }) => {
    const wasm = backend as BackendWasm;
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
    const batchA = size(a.shape.slice(0, -2));
    const batchB = size(b.shape.slice(0, -2));
    if (!transposeA && !transposeB && batchA === 1 && batchB === 1) return plain({ inputs, backend, attrs });
    if (batchA !== batchB && batchA !== 1 && batchB !== 1) {
      return plain({ inputs, backend, attrs }); // general broadcasting: leave it to the stock kernel
    }
    const temps: TensorInfo[] = [];
    // Materialize a transposed operand as a [batch, rows, cols] tensor.
    const as3d = (t: TensorInfo, batch: number, transposed: boolean): TensorInfo => {
      const [r, c] = t.shape.slice(-2);
      const t3: TensorInfo = { dataId: t.dataId, dtype: t.dtype, shape: [batch, r, c] };
      if (!transposed) return t3;
      const tt = transpose({ inputs: { x: t3 }, backend, attrs: { perm: [0, 2, 1] } }) as TensorInfo;
      temps.push(tt);
      return tt;
    };
    const A = as3d(a, batchA, transposeA); // [batchA, M, K]
    const B = as3d(b, batchB, transposeB); // [batchB, K, N]
    const [, M, K] = A.shape;
    const N = B.shape[2];
    const batch = Math.max(batchA, batchB);
    const outShape = [...(batchA >= batchB ? a.shape : b.shape).slice(0, -2), M, N];
    const matmul2d = (x: TensorInfo, w: TensorInfo) =>
      plain({ inputs: { a: x, b: w }, backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
    let out: TensorInfo;
    if (batchB === 1) {
      // One weight for every batch: fold the batch into the rows, [batch*M, K] @ [K, N].
      out = matmul2d({ ...A, shape: [1, batch * M, K] }, B);
      out = { ...out, shape: outShape };
    } else {
      out = wasm.makeOutput(outShape, 'float32');
      for (let i = 0; i < batch; i++) {
        const ai = wasm.makeOutput([1, M, K], 'float32');
        const bi = wasm.makeOutput([1, K, N], 'float32');
        const aOff = batchA === 1 ? 0 : i * M * K;
        (wasm.typedArrayFromHeap(ai) as Float32Array).set((wasm.typedArrayFromHeap(A) as Float32Array).subarray(aOff, aOff + M * K));
        (wasm.typedArrayFromHeap(bi) as Float32Array).set((wasm.typedArrayFromHeap(B) as Float32Array).subarray(i * K * N, (i + 1) * K * N));
        const oi = matmul2d(ai, bi);
        (wasm.typedArrayFromHeap(out) as Float32Array).set(wasm.typedArrayFromHeap(oi) as Float32Array, i * M * N);
        wasm.disposeData(ai.dataId);
        wasm.disposeData(bi.dataId);
        wasm.disposeData(oi.dataId);
      }
    }
    for (const t of temps) wasm.disposeData(t.dataId);
    return out;
  };
}

let registered = false;

/** Registers the missing/faster kernels for the wasm backend (idempotent). */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: BACKEND, kernelFunc: unsortedSegmentSum as never });
  const stock = tf.getKernel('BatchMatMul', BACKEND);
  tf.unregisterKernel('BatchMatMul', BACKEND);
  tf.registerKernel({ ...stock, kernelFunc: makeFastBatchMatMul(stock.kernelFunc as unknown as KernelFn) as never });
}
