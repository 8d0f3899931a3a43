// Reverse-mode differentiation over the ONNX graph builder (micrograd's idea,
// on graph nodes instead of numbers). Every differentiable op here appends its
// forward node to the graph and records one backward rule: given the gradient
// of its output, append the nodes that compute the gradients of its inputs.
// `backward(loss, wrt)` walks the records in reverse and sums the gradients of
// a value used several times (a shared block's weights, a tied embedding).
//
// A value carries its shape, with named dimensions ('B', 'T', 'N') for what is
// known only at run time; the shapes tell a rule which axes were broadcast,
// so that the gradient of a broadcast input is summed back to its shape. Only
// values that depend on something differentiated ("requires grad") get
// gradients: a frozen weight's Gemm computes no weight gradient at all.
//
// The rules follow PyTorch's derivatives.yaml; each is tested on its own
// against finite differences (test/onnx-tape.test.ts).
import { attr, type GraphBuilder } from './graph';

export type Dim = number | string;

export interface Value {
  name: string;
  shape: Dim[];
  requiresGrad: boolean;
}

/** A gradient of an op's output, or null where none flows back. */
type Grad = string | null;
/** Appends the nodes of a backward rule: output gradients → input gradients (null for inputs that need none). */
type Rule = (dOut: Grad[]) => Grad[];

interface Record {
  inputs: Value[];
  outputs: Value[];
  rule: Rule;
}

const sameShape = (a: Dim[], b: Dim[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Broadcast shape of a and b (numpy rules; a named dimension meets only itself or 1). */
function broadcast(a: Dim[], b: Dim[]): Dim[] {
  const r = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`cannot broadcast [${a}] with [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

export class Tape {
  private readonly records: Record[] = [];

  constructor(readonly g: GraphBuilder) {}

  /** A value of the graph (an input, initializer or constant); `requiresGrad` for what is differentiated. */
  value(name: string, shape: Dim[], requiresGrad = false): Value {
    return { name, shape, requiresGrad };
  }

  private record(opType: string, inputs: Value[], shape: Dim[], rule: (y: Value) => Rule, attrs = {}, domain = ''): Value {
    const name = this.g.op(
      opType,
      inputs.map((v) => v.name),
      attrs,
      { domain },
    )[0];
    const y: Value = { name, shape, requiresGrad: inputs.some((v) => v.requiresGrad) };
    if (y.requiresGrad) this.records.push({ inputs, outputs: [y], rule: rule(y) });
    return y;
  }

  // ---- helpers for rules (plain nodes, never differentiated)
  private op(opType: string, inputs: string[], attrs = {}): string {
    return this.g.op1(opType, inputs, attrs);
  }

  /** Sums `grad` (of shape `from`) over the axes broadcast to reach it from `to`, giving `to`'s shape. */
  private reduceTo(grad: string, from: Dim[], to: Value): string {
    if (sameShape(from, to.shape)) return grad;
    const lead = from.length - to.shape.length;
    const axes = from.flatMap((d, i) => (i < lead || (to.shape[i - lead] === 1 && d !== 1) ? [i] : []));
    const summed = this.op('ReduceSum', [grad, this.g.int64(axes)], { keepdims: attr.int(1) });
    return lead > 0 ? this.op('Reshape', [summed, this.op('Shape', [to.name])]) : summed;
  }

  /** Zeros of v's shape (the gradient of what the loss does not depend on). */
  zerosLike(v: Value): string {
    return this.op('ConstantOfShape', [this.op('Shape', [v.name])]);
  }

  // ---- elementwise (numpy broadcasting)

  /** a + b */
  add(a: Value, b: Value): Value {
    const shape = broadcast(a.shape, b.shape);
    return this.record('Add', [a, b], shape, () => ([g]) => [
      g && a.requiresGrad ? this.reduceTo(g, shape, a) : null,
      g && b.requiresGrad ? this.reduceTo(g, shape, b) : null,
    ]);
  }

  /** a − b */
  sub(a: Value, b: Value): Value {
    const shape = broadcast(a.shape, b.shape);
    return this.record('Sub', [a, b], shape, () => ([g]) => [
      g && a.requiresGrad ? this.reduceTo(g, shape, a) : null,
      g && b.requiresGrad ? this.reduceTo(this.op('Neg', [g]), shape, b) : null,
    ]);
  }

  /** a · b:  ∂a = g·b, ∂b = g·a */
  mul(a: Value, b: Value): Value {
    const shape = broadcast(a.shape, b.shape);
    return this.record('Mul', [a, b], shape, () => ([g]) => [
      g && a.requiresGrad ? this.reduceTo(this.op('Mul', [g, b.name]), shape, a) : null,
      g && b.requiresGrad ? this.reduceTo(this.op('Mul', [g, a.name]), shape, b) : null,
    ]);
  }

  /** a / b:  ∂a = g/b, ∂b = −g·y/b */
  div(a: Value, b: Value): Value {
    const shape = broadcast(a.shape, b.shape);
    return this.record('Div', [a, b], shape, (y) => ([g]) => {
      if (!g) return [null, null];
      const ga = this.op('Div', [g, b.name]);
      return [
        a.requiresGrad ? this.reduceTo(ga, shape, a) : null,
        b.requiresGrad ? this.reduceTo(this.op('Neg', [this.op('Mul', [ga, y.name])]), shape, b) : null,
      ];
    });
  }

  neg(x: Value): Value {
    return this.record('Neg', [x], x.shape, () => ([g]) => [g && this.op('Neg', [g])]);
  }

  /** σ(x):  ∂x = g·y·(1 − y) */
  sigmoid(x: Value): Value {
    return this.record('Sigmoid', [x], x.shape, (y) => ([g]) => [
      g && this.op('Mul', [this.op('Mul', [g, y.name]), this.op('Sub', [this.g.float(1), y.name])]),
    ]);
  }

  /** x·σ(x), SwiGLU's activation, as the two ops above. */
  silu(x: Value): Value {
    return this.mul(x, this.sigmoid(x));
  }

  /** max(x, 0), ReGLU's activation:  ∂x = g where x > 0, else 0 (PyTorch's threshold_backward) */
  relu(x: Value): Value {
    return this.record('Relu', [x], x.shape, () => ([g]) => [g && this.op('Where', [this.op('Greater', [x.name, this.g.float(0)]), g, this.g.float(0)])]);
  }

  /**
   * GeGLU's activation, one Gelu node (opset 20):
   *   exact  y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)):  ∂x = g·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π)
   *   tanh   y = ½x(1 + t), t = tanh(u), u = √(2/π)·(x + 0.044715x³):
   *          ∂x = g·(½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3·0.044715x²))
   */
  gelu(x: Value, approximate: 'none' | 'tanh'): Value {
    const mul = (...v: string[]) => v.slice(1).reduce((a, b) => this.op('Mul', [a, b]), v[0]);
    const c = (v: number) => this.g.float(v);
    return this.record(
      'Gelu',
      [x],
      x.shape,
      () =>
        ([g]) => {
          if (!g) return [null];
          const x2 = mul(x.name, x.name);
          if (approximate === 'none') {
            const cdf = mul(c(0.5), this.op('Add', [c(1), this.op('Erf', [mul(x.name, c(Math.SQRT1_2))])]));
            const xPdf = mul(x.name, this.op('Exp', [mul(x2, c(-0.5))]), c(1 / Math.sqrt(2 * Math.PI)));
            return [mul(g, this.op('Add', [cdf, xPdf]))];
          }
          const k = Math.sqrt(2 / Math.PI);
          const t = this.op('Tanh', [mul(c(k), this.op('Add', [x.name, mul(c(0.044715), x2, x.name)]))]);
          const outer = mul(c(0.5), this.op('Add', [c(1), t]));
          const sech2 = this.op('Sub', [c(1), mul(t, t)]);
          const inner = mul(c(0.5 * k), x.name, sech2, this.op('Add', [c(1), mul(c(3 * 0.044715), x2)]));
          return [mul(g, this.op('Add', [outer, inner]))];
        },
      { approximate: attr.string(approximate) },
    );
  }

  // ---- matrix products

  /** a @ b over the last two axes, batch axes broadcast:  ∂a = g @ bᵀ, ∂b = aᵀ @ g (summed over broadcast axes). */
  matmul(a: Value, b: Value): Value {
    const batch = broadcast(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const shape = [...batch, a.shape.at(-2)!, b.shape.at(-1)!];
    const swap = (v: Value) => {
      const perm = v.shape.map((_, i) => i);
      perm.splice(-2, 2, perm.length - 1, perm.length - 2);
      return this.op('Transpose', [v.name], { perm: attr.ints(perm) });
    };
    return this.record('MatMul', [a, b], shape, () => ([g]) => [
      g && a.requiresGrad ? this.reduceTo(this.op('MatMul', [g, swap(b)]), [...batch, ...a.shape.slice(-2)], a) : null,
      g && b.requiresGrad ? this.reduceTo(this.op('MatMul', [swap(a), g]), [...batch, ...b.shape.slice(-2)], b) : null,
    ]);
  }

  /** A linear layer in PyTorch's layout: x [N, in] · w [out, in]ᵀ → [N, out].  ∂x = g·w, ∂w = gᵀ·x */
  linear(x: Value, w: Value): Value {
    if (x.shape.length !== 2 || w.shape.length !== 2) throw new Error(`linear takes [N, in] and [out, in], got [${x.shape}] and [${w.shape}]`);
    return this.record(
      'Gemm',
      [x, w],
      [x.shape[0], w.shape[0]],
      () =>
        ([g]) => [
          g && x.requiresGrad ? this.op('MatMul', [g, w.name]) : null,
          g && w.requiresGrad ? this.op('Gemm', [g, x.name], { transA: attr.int(1) }) : null,
        ],
      { transB: attr.int(1) },
    );
  }

  // ---- shapes

  /** x reshaped to `shape`, given at run time by the int64 tensor `target`:  ∂x = reshape(g, shape(x)) */
  reshape(x: Value, target: string, shape: Dim[]): Value {
    return this.record('Reshape', [x, this.value(target, [shape.length])], shape, () => ([g]) => [
      g && this.op('Reshape', [g, this.op('Shape', [x.name])]),
      null,
    ]);
  }

  /** Axes permuted:  ∂x = g with the inverse permutation. */
  transpose(x: Value, perm: number[]): Value {
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return this.record(
      'Transpose',
      [x],
      perm.map((p) => x.shape[p]),
      () =>
        ([g]) => [g && this.op('Transpose', [g], { perm: attr.ints(inverse) })],
      {
        perm: attr.ints(perm),
      },
    );
  }

  /** Pieces of `sizes` along `axis`:  ∂x = their gradients concatenated (zeros for a piece without one). */
  split(x: Value, axis: number, sizes: number[]): Value[] {
    const ax = axis < 0 ? x.shape.length + axis : axis;
    const names = this.g.op('Split', [x.name, this.g.int64(sizes)], { axis: attr.int(ax) }, { numOutputs: sizes.length });
    const outs = names.map((name, i): Value => ({ name, shape: x.shape.map((d, j) => (j === ax ? sizes[i] : d)), requiresGrad: x.requiresGrad }));
    if (x.requiresGrad) {
      this.records.push({
        inputs: [x],
        outputs: outs,
        rule: (gs) => [
          gs.every((g) => !g)
            ? null
            : this.op(
                'Concat',
                gs.map((g, i) => g ?? this.zerosLike(outs[i])),
                { axis: attr.int(ax) },
              ),
        ],
      });
    }
    return outs;
  }

  /** Inputs side by side along `axis` (each of a known size there):  ∂xᵢ = the matching piece of g. */
  concat(xs: Value[], axis: number): Value {
    const ax = axis < 0 ? xs[0].shape.length + axis : axis;
    const sizes = xs.map((x) => x.shape[ax]);
    if (!sizes.every((s): s is number => typeof s === 'number')) throw new Error('concat: sizes along the axis must be known');
    const total = sizes.reduce((n, s) => n + s, 0);
    const shape = xs[0].shape.map((d, j) => (j === ax ? total : d));
    return this.record(
      'Concat',
      xs,
      shape,
      () =>
        ([g]) =>
          g ? this.g.op('Split', [g, this.g.int64(sizes)], { axis: attr.int(ax) }, { numOutputs: sizes.length }) : xs.map(() => null),
      {
        axis: attr.int(ax),
      },
    );
  }

  // ---- reductions and normalizations

  /** Σ of every element (a scalar):  ∂x = g broadcast to x's shape. */
  sum(x: Value): Value {
    return this.record(
      'ReduceSum',
      [x],
      [],
      () =>
        ([g]) => [g && this.op('Expand', [g, this.op('Shape', [x.name])])],
      { keepdims: attr.int(0) },
    );
  }

  /** Softmax over the last axis:  ∂x = y·(g − Σ g·y) */
  softmax(x: Value): Value {
    return this.record(
      'Softmax',
      [x],
      x.shape,
      (y) =>
        ([g]) => {
          if (!g) return [null];
          const dot = this.op('ReduceSum', [this.op('Mul', [g, y.name]), this.g.int64([-1])], { keepdims: attr.int(1) });
          return [this.op('Mul', [y.name, this.op('Sub', [g, dot])])];
        },
      { axis: attr.int(-1) },
    );
  }

  /**
   * RMSNorm over the last axis, y = x̂·gain with x̂ = x·r, r = 1/√(mean(x²) + ε) (ONNX Runtime's fused
   * SimplifiedLayerNormalization, which also returns r):
   *   ∂gain = Σ g·x̂ over the leading axes,  ∂x = r·(g·gain − x̂·mean(g·gain·x̂))
   */
  rmsNorm(x: Value, gain: Value, eps: number): Value {
    const [name, inv] = this.g.op('SimplifiedLayerNormalization', [x.name, gain.name], { axis: attr.int(-1), epsilon: attr.float(eps) }, { numOutputs: 2 });
    const y: Value = { name, shape: x.shape, requiresGrad: x.requiresGrad || gain.requiresGrad };
    if (y.requiresGrad) {
      this.records.push({
        inputs: [x, gain],
        outputs: [y],
        rule: ([g]) => {
          if (!g) return [null, null];
          const xhat = this.op('Mul', [x.name, inv]);
          const gx = x.requiresGrad
            ? (() => {
                const gg = this.op('Mul', [g, gain.name]);
                const mean = this.op('ReduceMean', [this.op('Mul', [gg, xhat]), this.g.int64([-1])], { keepdims: attr.int(1) });
                return this.op('Mul', [inv, this.op('Sub', [gg, this.op('Mul', [xhat, mean])])]);
              })()
            : null;
          const gGain = gain.requiresGrad ? this.reduceTo(this.op('Mul', [g, xhat]), x.shape, gain) : null;
          return [gx, gGain];
        },
      });
    }
    return y;
  }

  // ---- lookups and the loss

  /** Rows of `table` [V, H] at `ids` (int64, any shape) → [...ids, H]:  ∂table = g scattered back, added per id. */
  gather(table: Value, ids: Value): Value {
    return this.record('Gather', [table, ids], [...ids.shape, table.shape[1]], () => ([g]) => [
      g && this.g.op1('ScatterND', [this.zerosLike(table), this.op('Unsqueeze', [ids.name, this.g.int64([-1])]), g], { reduction: attr.string('add') }),
      null,
    ]);
  }

  /**
   * Per-row cross-entropy of logits [N, V] against int64 targets [N] → [N] (SoftmaxCrossEntropyLoss, which
   * also returns log-softmax):  ∂logits = g·(softmax − onehot(target)), the onehot part added by scatter.
   */
  crossEntropy(logits: Value, targets: Value): Value {
    const [name, logp] = this.g.op('SoftmaxCrossEntropyLoss', [logits.name, targets.name], { reduction: attr.string('none') }, { numOutputs: 2 });
    const y: Value = { name, shape: [logits.shape[0]], requiresGrad: logits.requiresGrad };
    if (y.requiresGrad) {
      this.records.push({
        inputs: [logits, targets],
        outputs: [y],
        rule: ([g]) => {
          if (!g) return [null, null];
          const gCol = this.op('Unsqueeze', [g, this.g.int64([-1])]); // [N, 1]
          const soft = this.op('Mul', [this.op('Exp', [logp]), gCol]);
          const rows = this.op('Range', [
            this.g.int64([0], true),
            this.op('Squeeze', [this.op('Shape', [targets.name]), this.g.int64([0])]),
            this.g.int64([1], true),
          ]);
          const at = this.op('Concat', [this.op('Unsqueeze', [rows, this.g.int64([-1])]), this.op('Unsqueeze', [targets.name, this.g.int64([-1])])], {
            axis: attr.int(-1),
          }); // [N, 2]
          return [this.g.op1('ScatterND', [soft, at, this.op('Neg', [g])], { reduction: attr.string('add') }), null];
        },
      });
    }
    return y;
  }

  /** Where the records stand now: backwardFrom(…, mark) differentiates only what is recorded after it. */
  mark(): number {
    return this.records.length;
  }

  /**
   * Appends the backward pass of scalar `loss` and returns the gradient of each
   * value of `wrt` (zeros where the loss does not depend on it).
   */
  backward(loss: Value, wrt: Value[]): Map<string, string> {
    if (loss.shape.length !== 0) throw new Error(`backward: the loss must be a scalar, got [${loss.shape}]`);
    const grads = this.backwardFrom([[loss, this.g.float(1)]], wrt);
    return new Map(wrt.map((v) => [v.name, grads.get(v.name) ?? this.zerosLike(v)]));
  }

  /**
   * Appends the backward pass of the records after `mark`, seeded with the
   * gradients of some of their outputs (`seeds`: value, its gradient), and
   * returns the gradient of each value of `wrt` (null where none flows). Those
   * records are then dropped: a later backward does not walk them again, so a
   * sub-graph (one layer, recomputed) is differentiated on its own.
   */
  backwardFrom(seeds: [Value, string][], wrt: Value[], mark = 0): Map<string, string | null> {
    const grads = new Map<string, string[]>(seeds.map(([v, g]) => [v.name, [g]]));
    const total = (v: Value): string | null => {
      const gs = grads.get(v.name);
      if (!gs?.length) return null;
      if (gs.length > 1) grads.set(v.name, [this.op('Sum', gs)]);
      return grads.get(v.name)![0];
    };
    for (let i = this.records.length - 1; i >= mark; i--) {
      const r = this.records[i];
      const dOut = r.outputs.map(total);
      if (dOut.every((g) => g === null)) continue;
      r.rule(dOut).forEach((g, k) => {
        const input = r.inputs[k];
        if (g === null || !input.requiresGrad) return;
        grads.set(input.name, [...(grads.get(input.name) ?? []), g]);
      });
    }
    this.records.length = mark;
    return new Map(wrt.map((v) => [v.name, total(v)]));
  }
}
