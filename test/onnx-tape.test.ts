// Each backward rule of the ONNX tape (engine/onnx/tape.ts) on its own, run
// through ONNX Runtime: for an op y = f(inputs), the loss Σ y·R with a fixed
// random R has ∂loss/∂input = the rule's output for dy = R, which must equal
// the central difference (L(x + h) − L(x − h)) / 2h of every element of every
// differentiable input. Plus the tape's own duties: a value used twice gets
// both uses' gradients, a frozen input gets no gradient nodes at all, and only
// a scalar can be differentiated.
import { beforeAll, describe, expect, it } from 'vitest';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { seededRandom } from '../engine/generate/sampling';
import { GraphBuilder, MS_DOMAIN } from '../engine/onnx/graph';
import { loadOrt, type Ort } from '../engine/onnx/ort';
import { DataType } from '../engine/onnx/proto';
import { cpuSessionOptions } from '../engine/onnx/session';
import { Tape, type Dim, type Value } from '../engine/onnx/tape';

let ort: Ort;
beforeAll(async () => {
  ort = await loadOrt();
});

/**
 * Step of the central differences. Inputs are O(1), so the truncation error
 * (h²/6 · f''') is ~2e-5 and float32 rounding of y, divided by 2h, ~1e-5:
 * both well under the tolerance below.
 */
const H = 1e-2;
/** Allowed |analytic − numeric|, relative to the gradient's largest element (a wrong rule is off by O(1) of it). */
const TOLERANCE = 1e-3;

/** Names of the op's output and of R in the test graphs (apart from the inputs' names). */
const Y = 'test.y';
const R = 'test.r';

interface Input {
  name: string;
  /** Declared dimensions (a string: known at run time only, as in the model's graphs). */
  dims: Dim[];
  shape: number[];
  data: Float32Array | BigInt64Array;
  /** Differentiated (and checked against finite differences). */
  grad?: boolean;
}

type Build = (t: Tape, v: Record<string, Value>, g: GraphBuilder) => Value;

const size = (shape: number[]) => shape.reduce((n, d) => n * d, 1);

/** n uniform floats in [lo, hi), the same for the same seed. */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * random());
}

const floats = (name: string, dims: Dim[], shape: number[], seed: number, grad = true, lo = -1, hi = 1): Input => ({
  name,
  dims,
  shape,
  data: uniform(size(shape), seed, lo, hi),
  grad,
});

const ints = (name: string, dims: Dim[], shape: number[], values: number[]): Input => ({
  name,
  dims,
  shape,
  data: BigInt64Array.from(values.map((v) => BigInt(v))),
});

interface Built {
  g: GraphBuilder;
  session: InferenceSession;
  feeds: Record<string, Tensor>;
  /** Σ y·R in float64, from the op's output y (so float32 rounding of the sum stays out of the differences). */
  loss: (out: Record<string, Tensor>) => number;
  /** The tape's gradient of each differentiated input at the inputs given. */
  analytic: Map<string, Float32Array>;
}

/** Builds y = build(inputs), loss = Σ y·R, its backward pass, and one session that runs them. */
async function build(inputs: Input[], op: Build, seed = 7): Promise<Built> {
  const g = new GraphBuilder('tape-test');
  const t = new Tape(g);
  const v: Record<string, Value> = {};
  const known = new Map<Dim, number>();
  for (const x of inputs) {
    const type = x.data instanceof BigInt64Array ? DataType.INT64 : DataType.FLOAT;
    v[x.name] = t.value(g.input(x.name, type, x.dims), x.dims, x.grad === true);
    x.dims.forEach((d, i) => typeof d === 'string' && known.set(d, x.shape[i]));
  }
  const y = op(t, v, g);
  const yShape = y.shape.map((d) => (typeof d === 'number' ? d : known.get(d)!));
  const r = uniform(size(yShape), seed);
  const rValue = t.value(g.input(R, DataType.FLOAT, y.shape), y.shape);
  const loss = t.sum(t.mul(y, rValue));
  const wrt = inputs.filter((x) => x.grad);
  const grads = t.backward(
    loss,
    wrt.map((x) => v[x.name]),
  );
  g.op('Identity', [y.name], {}, { outputs: [Y] });
  g.output(Y, DataType.FLOAT, y.shape);
  for (const x of wrt) {
    g.op('Identity', [grads.get(x.name)!], {}, { outputs: [`grad.${x.name}`] });
    g.output(`grad.${x.name}`, DataType.FLOAT, x.dims);
  }
  const { model, weights } = g.encode(
    [
      { domain: '', version: 21 },
      { domain: MS_DOMAIN, version: 1 },
    ],
    'w.bin',
  );
  const session = await ort.InferenceSession.create(model, {
    ...cpuSessionOptions(1),
    ...(weights.byteLength > 0 ? { externalData: [{ path: 'w.bin', data: weights }] } : {}),
  });
  const feeds: Record<string, Tensor> = { [R]: new ort.Tensor('float32', r, yShape) };
  for (const x of inputs) feeds[x.name] = new ort.Tensor(x.data instanceof BigInt64Array ? 'int64' : 'float32', x.data, x.shape);
  const out = await session.run(feeds);
  const analytic = new Map(wrt.map((x) => [x.name, out[`grad.${x.name}`].data as Float32Array]));
  const lossOf = (o: Record<string, Tensor>) => {
    const yd = o[Y].data as Float32Array;
    let s = 0;
    for (let i = 0; i < yd.length; i++) s += yd[i] * r[i];
    return s;
  };
  return { g, session, feeds, loss: lossOf, analytic };
}

/** Central differences of the loss in every element of input `x`. */
async function numeric(b: Built, x: Input): Promise<Float64Array> {
  const base = x.data as Float32Array;
  const out = new Float64Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const plus = base.slice();
    const minus = base.slice();
    plus[i] += H;
    minus[i] -= H;
    const at = async (d: Float32Array) => b.loss(await b.session.run({ ...b.feeds, [x.name]: new ort.Tensor('float32', d, x.shape) }));
    out[i] = ((await at(plus)) - (await at(minus))) / (plus[i] - minus[i]); // the step as float32 stored it
  }
  return out;
}

/** Checks the tape's gradient of every differentiated input against finite differences; returns the graph and gradients. */
async function gradCheck(inputs: Input[], op: Build): Promise<Built> {
  const b = await build(inputs, op);
  for (const x of inputs.filter((i) => i.grad)) {
    const got = b.analytic.get(x.name)!;
    expect(got.length, `gradient of ${x.name}: element count`).toBe(size(x.shape));
    const want = await numeric(b, x);
    const scale = Math.max(...want.map(Math.abs));
    expect(scale, `gradient of ${x.name} is not all zeros`).toBeGreaterThan(0.05);
    const worst = Math.max(...got.map((gv, i) => Math.abs(gv - want[i])));
    expect(worst / scale, `gradient of ${x.name}: max |analytic − numeric| / max |numeric|`).toBeLessThan(TOLERANCE);
  }
  await b.session.release();
  return b;
}

const gemmsWithTransA = (g: GraphBuilder) => g.nodes.filter((n) => n.opType === 'Gemm' && n.attrs.transA?.value === 1).length;

describe('tape: each backward rule against finite differences', () => {
  it('add and sub: [N, H] with [H] (the broadcast side summed over N), and same shapes', async () => {
    const x = floats('x', ['N', 4], [3, 4], 1);
    const b = floats('b', [4], [4], 2);
    await gradCheck([x, b], (t, v) => t.add(v.x, v.b));
    await gradCheck([x, b], (t, v) => t.sub(v.x, v.b));
    await gradCheck([x, floats('y', ['N', 4], [3, 4], 3)], (t, v) => t.sub(v.x, v.y));
    await gradCheck([b, x], (t, v) => t.sub(v.b, v.x)); // the broadcast side first
  });

  it('mul: [N, H] with [H], and with a scalar constant that gets no gradient', async () => {
    await gradCheck([floats('x', ['N', 4], [3, 4], 1), floats('gain', [4], [4], 2)], (t, v) => t.mul(v.x, v.gain));
    const { g } = await gradCheck([floats('x', ['N', 4], [3, 4], 1)], (t, v, gb) => t.mul(v.x, t.value(gb.float(0.37), [])));
    expect(g.nodes.filter((n) => n.opType === 'Mul' && n.inputs.includes('x')).length, 'g·x, the constant’s gradient, is never built').toBe(1);
  });

  it('div: both sides, with the divisor broadcast and kept away from 0', async () => {
    const x = floats('x', ['N', 4], [3, 4], 1);
    const d = floats('d', [4], [4], 2, true, 1, 2);
    await gradCheck([x, d], (t, v) => t.div(v.x, v.d));
    await gradCheck([floats('n', [4], [4], 3), floats('m', ['N', 4], [3, 4], 4, true, 1, 2)], (t, v) => t.div(v.n, v.m));
  });

  it('neg, sigmoid, silu', async () => {
    const x = floats('x', ['N', 5], [2, 5], 1, true, -3, 3);
    await gradCheck([x], (t, v) => t.neg(v.x));
    await gradCheck([x], (t, v) => t.sigmoid(v.x));
    await gradCheck([x], (t, v) => t.silu(v.x));
  });

  it('relu, and gelu exact (erf) and tanh-approximated', async () => {
    // Kept away from relu's kink at 0, where the central difference straddles it.
    const x = floats('x', ['N', 5], [2, 5], 1, true, -3, 3);
    (x.data as Float32Array).forEach((e, i, a) => (a[i] = Math.abs(e) < 0.05 ? e + Math.sign(e || 1) * 0.1 : e));
    await gradCheck([x], (t, v) => t.relu(v.x));
    await gradCheck([x], (t, v) => t.gelu(v.x, 'none'));
    await gradCheck([x], (t, v) => t.gelu(v.x, 'tanh'));
  });

  it('matmul: plain, and a batch-broadcast right side of fewer axes', async () => {
    await gradCheck([floats('a', ['N', 4], [3, 4], 1), floats('b', [4, 2], [4, 2], 2)], (t, v) => t.matmul(v.a, v.b));
    await gradCheck([floats('a', [2, 3, 4], [2, 3, 4], 1), floats('b', [4, 2], [4, 2], 2)], (t, v) => t.matmul(v.a, v.b));
  });

  it('matmul as grouped-query attention: the shared key/value side gets the sum over the group', async () => {
    // [B, nkv, group, T, d] @ [B, nkv, 1, d, T] (scores), then [.., group, T, T] @ [.., 1, T, d] (weighted values)
    const q = floats('q', ['B', 2, 2, 'T', 2], [1, 2, 2, 3, 2], 1);
    const kT = floats('kT', ['B', 2, 1, 2, 'T'], [1, 2, 1, 2, 3], 2);
    await gradCheck([q, kT], (t, v) => t.matmul(v.q, v.kT));
    const p = floats('p', ['B', 2, 2, 'T', 'T'], [1, 2, 2, 3, 3], 3);
    const val = floats('val', ['B', 2, 1, 'T', 2], [1, 2, 1, 3, 2], 4);
    await gradCheck([p, val], (t, v) => t.matmul(v.p, v.val));
  });

  it('linear: x [N, in] · w [out, in]ᵀ', async () => {
    await gradCheck([floats('x', ['N', 4], [3, 4], 1), floats('w', [2, 4], [2, 4], 2)], (t, v) => t.linear(v.x, v.w));
  });

  it('reshape and transpose, alone and as a round trip', async () => {
    const x = floats('x', [2, 6], [2, 6], 1);
    await gradCheck([x], (t, v, g) => t.reshape(v.x, g.int64([3, 4]), [3, 4]));
    await gradCheck([floats('x4', [2, 3, 2, 2], [2, 3, 2, 2], 2)], (t, v) => t.transpose(v.x4, [0, 2, 1, 3]));
    await gradCheck([floats('x3', [2, 3, 4], [2, 3, 4], 3)], (t, v) => t.transpose(v.x3, [2, 0, 1])); // not its own inverse
    // [2, 6] → [2, 3, 2] → [2, 2, 3] → [2, 6]: heads split, swapped and merged back; scaled so the trip is not the identity
    await gradCheck([x, floats('s', [6], [6], 3)], (t, v, g) => {
      const heads = t.transpose(t.reshape(v.x, g.int64([2, 3, 2]), [2, 3, 2]), [0, 2, 1]);
      return t.mul(t.reshape(heads, g.int64([2, 6]), [2, 6]), v.s);
    });
  });

  it('split: every piece used, and a piece unused downstream gets zeros', async () => {
    const x = floats('x', ['N', 6], [2, 6], 1);
    await gradCheck([x, floats('w', [3], [3], 2)], (t, v) => {
      const [a, b, c] = t.split(v.x, -1, [1, 2, 3]);
      return t.concat([t.mul(c, v.w), t.sigmoid(a), b], -1);
    });
    const { analytic } = await gradCheck([x], (t, v) => t.sigmoid(t.split(v.x, 1, [2, 4])[1]));
    const gx = analytic.get('x')!;
    expect([gx[0], gx[1], gx[6], gx[7]], 'the unused piece').toEqual([0, 0, 0, 0]);
    expect(gx.filter((e) => e !== 0).length).toBe(8);
  });

  it('concat: along the last axis and the first', async () => {
    const a = floats('a', ['N', 2], [3, 2], 1);
    const b = floats('b', ['N', 3], [3, 3], 2);
    await gradCheck([a, b], (t, v) => t.concat([v.a, v.b], -1));
    await gradCheck([floats('c', [1, 4], [1, 4], 3), floats('d', [2, 4], [2, 4], 4)], (t, v) => t.concat([v.c, v.d], 0));
  });

  it('sum: a scalar that scales a tensor gets the sum of its gradient', async () => {
    await gradCheck([floats('x', [2, 3], [2, 3], 1), floats('w', [2, 3], [2, 3], 2)], (t, v) => {
      const total = t.sum(t.mul(v.x, v.w));
      return t.mul(t.sigmoid(v.x), total);
    });
  });

  it('softmax over the last axis', async () => {
    await gradCheck([floats('x', ['N', 5], [3, 5], 1, true, -2, 2)], (t, v) => t.softmax(v.x));
  });

  it('rmsNorm: x and gain', async () => {
    const x = floats('x', ['N', 4], [3, 4], 1, true, -2, 2);
    const gain = floats('gain', [4], [4], 2, true, 0.5, 1.5);
    await gradCheck([x, gain], (t, v) => t.rmsNorm(v.x, v.gain, 1e-5));
    await gradCheck([floats('x3', ['B', 'T', 4], [2, 2, 4], 3, true, -2, 2), gain], (t, v) => t.rmsNorm(v.x3, v.gain, 1e-5));
  });

  it('gather: repeated ids add their rows’ gradients; ids of any shape', async () => {
    const table = floats('table', [5, 3], [5, 3], 1);
    const { analytic } = await gradCheck([table, ints('ids', ['B', 'T'], [2, 3], [1, 3, 1, 4, 1, 0])], (t, v) => t.gather(v.table, v.ids));
    expect(Array.from(analytic.get('table')!.subarray(6, 9)), 'row 2 is never looked up').toEqual([0, 0, 0]);
  });

  it('crossEntropy against int64 targets, per row', async () => {
    await gradCheck([floats('logits', ['N', 5], [3, 5], 1, true, -2, 2), ints('targets', ['N'], [3], [4, 0, 4])], (t, v) =>
      t.crossEntropy(v.logits, v.targets),
    );
  });
});

describe('tape: backward', () => {
  it('a value used twice gets the sum of both uses’ gradients', async () => {
    const { g } = await gradCheck([floats('x', ['N', 4], [3, 4], 1), floats('w', [4], [4], 2)], (t, v) => t.add(t.mul(v.x, v.w), t.sigmoid(v.x)));
    expect(g.nodes.filter((n) => n.opType === 'Sum').length).toBe(1);
    await gradCheck([floats('x', [2, 3], [2, 3], 3)], (t, v) => t.mul(v.x, v.x));
  });

  it('a frozen input gets no gradient nodes: a frozen weight’s linear has no weight Gemm, a frozen input’s no x MatMul', async () => {
    const lin = (t: Tape, v: Record<string, Value>) => t.linear(v.x, v.w);
    const x = floats('x', ['N', 4], [3, 4], 1);
    const w = floats('w', [2, 4], [2, 4], 2);
    const frozenW = await gradCheck([x, { ...w, grad: false }], lin);
    expect(gemmsWithTransA(frozenW.g)).toBe(0);
    const frozenX = await gradCheck([{ ...x, grad: false }, w], lin);
    expect(gemmsWithTransA(frozenX.g)).toBe(1);
    expect(frozenX.g.nodes.filter((n) => n.opType === 'MatMul').length).toBe(0);
    const both = await gradCheck([x, w], lin);
    expect(gemmsWithTransA(both.g)).toBe(1);
    expect(both.g.nodes.filter((n) => n.opType === 'MatMul').length).toBe(1);
  });

  it('a frozen branch records nothing: the tape differentiates only what depends on a differentiated value', async () => {
    const { g } = await gradCheck([floats('x', [2, 3], [2, 3], 1), floats('c', [2, 3], [2, 3], 2, false)], (t, v) => t.mul(v.x, t.sigmoid(t.neg(v.c))));
    const ops = g.nodes.map((n) => n.opType);
    expect(ops.filter((o) => o === 'Neg').length, 'only the forward Neg').toBe(1);
    expect(ops.filter((o) => o === 'Sigmoid').length).toBe(1);
  });

  it('a value the loss does not depend on gets zeros', async () => {
    const b = await build([floats('x', [2, 3], [2, 3], 1), floats('unused', [4], [4], 2)], (t, v) => t.sigmoid(v.x));
    expect(Array.from(b.analytic.get('unused')!)).toEqual([0, 0, 0, 0]);
    await b.session.release();
  });

  it('throws for a loss that is not a scalar', () => {
    const g = new GraphBuilder('t');
    const t = new Tape(g);
    const x = t.value(g.input('x', DataType.FLOAT, ['N', 4]), ['N', 4], true);
    expect(() => t.backward(t.sigmoid(x), [x])).toThrow(/scalar/);
  });
});
