// One training step of a MobileLLM as an ONNX graph: the forward pass of the
// loss and, derived from it by the tape (tape.ts), the gradients of whatever is
// trained. The same parameter layout as every other format (model/layout.ts).
//
//   inputs   input_ids [B, T] int64, targets [N] int64 and loss weights [N]
//            (N = B·T: the next token of each position, weight 0 for prompt and
//            padding), inv_denom [] (1 / Σ weights of the whole optimizer step),
//            the trained tensors, and for LoRA dropout the keep-masks
//   outputs  loss [] = Σ w·nll · inv_denom, and grad.<name> of every trained tensor
//
//   ids ─ Gather(embed) ─ effective layers ─ final RMSNorm ─ Gemm(head) ─ cross-entropy
//   layer: x += o(attn(rope(q), rope(k), v)) of RMSNorm(x);  x += down(act(gate)·up) of RMSNorm(x)
//
// Frozen tensors are initializers, each physical block's once for all the
// layers that run it; trained tensors are inputs, fed each step in the
// checkpoint's layout ([out, in] for a linear: every linear is a Gemm with
// transB). A tensor read at several places (a shared block, the tied
// embedding) gets one gradient, the tape's sum over its uses.
//
// LoRA adds s·dropout(x)·A·B to a target linear, A [in, r], B [r, out]; the
// dropout keep-mask of each adapted linear of each effective layer is an input
// ([N, in], values 0 or 1/(1 − p)), drawn by the trainer from its seeded RNG.
import type { MobileLLMConfig } from '../model/config';
import { fullWidth, ropeAngles } from '../model/rope';
import type { LinearKey, TensorSpec } from '../model/layout';
import { GraphBuilder, MS_DOMAIN, attr } from './graph';
import { DataType, type DeferredBytes } from './proto';
import { Tape, type Value } from './tape';

/** What a step trains. */
export type Trained =
  | { kind: 'full' }
  | {
      kind: 'lora';
      /** Adapted linears of every block. */
      targets: LinearKey[];
      rank: number;
      scale: number;
      /** Keep-masks as inputs (dropout > 0). */
      dropout: boolean;
      /** Input names of A and B of block b's linear `key`. */
      names: (block: number, key: LinearKey) => { a: string; b: string };
    };

export interface TrainingGraphInput {
  config: MobileLLMConfig;
  specs: TensorSpec[];
  /** Effective layer → physical block. */
  schedule: number[];
  /** Bytes (float32, checkpoint layout) of a frozen tensor. */
  frozen: (spec: TensorSpec) => DeferredBytes;
  trained: Trained;
  /**
   * Recompute per layer: the forward pass keeps only each layer's input, and
   * each layer's forward runs again right before its backward (one more
   * forward pass of compute; the activations of one layer alive at a time
   * instead of every layer's). Default: keep every layer's activations.
   */
  recompute?: boolean;
}

export interface TrainingGraph {
  model: Uint8Array;
  weights: Uint8Array;
  /** Trained tensors in input order: name and shape. */
  params: { name: string; shape: number[] }[];
  /** Dropout keep-mask inputs: name, effective layer and width (rows are N). */
  masks: { name: string; layer: number; width: number }[];
}

export const TRAINING_WEIGHTS_FILE = 'training-weights.bin';

const OPSETS = [
  { domain: '', version: 21 },
  { domain: MS_DOMAIN, version: 1 },
];

/** Row chunks of the head (logits and cross-entropy) in recompute mode. */
const HEAD_CHUNKS = 4;

export const gradName = (param: string) => `grad.${param}`;

export function buildTrainingGraph(inp: TrainingGraphInput): TrainingGraph {
  const { config: c, specs, schedule, trained } = inp;
  const { numHeads: nh, numKvHeads: nkv, headDim: d } = c;
  const group = nh / nkv;
  const g = new GraphBuilder('mobilellm-train');
  const t = new Tape(g);
  const i64 = (...v: number[]) => g.int64(v);
  const params: TrainingGraph['params'] = [];
  const masks: TrainingGraph['masks'] = [];
  const trainedValues: Value[] = [];

  // ---- inputs
  const ids = g.input('input_ids', DataType.INT64, ['B', 'T']);
  const targets = t.value(g.input('targets', DataType.INT64, ['N']), ['N']);
  const weights = t.value(g.input('weights', DataType.FLOAT, ['N']), ['N']);
  const invDenom = t.value(g.input('inv_denom', DataType.FLOAT, []), []);
  const trainedInput = (name: string, shape: number[]): Value => {
    params.push({ name, shape });
    const v = t.value(g.input(name, DataType.FLOAT, shape), shape, true);
    trainedValues.push(v);
    return v;
  };

  // ---- parameters: trained ones are inputs, frozen ones initializers
  const byName = new Map<string, Value>();
  for (const s of specs) {
    byName.set(
      s.name,
      trained.kind === 'full' ? trainedInput(s.name, s.shape) : t.value(g.initializer(s.name, DataType.FLOAT, s.shape, inp.frozen(s)), s.shape),
    );
  }
  const spec = (pred: (s: TensorSpec) => boolean) => byName.get(specs.find(pred)!.name)!;
  const embed = spec((s) => s.kind === 'embedding');
  const head = c.shareEmbedding ? embed : spec((s) => s.kind === 'head');
  const finalNorm = spec((s) => s.kind === 'norm' && s.block === undefined);
  // The forward pass of recompute mode reads the parameters detached: it records nothing for the backward.
  let detached = false;
  const use = (v: Value): Value => (detached ? { ...v, requiresGrad: false } : v);
  const blockParam = (b: number, kind: 'norm' | 'linear', key: string) => use(spec((s) => s.block === b && s.kind === kind && s.key === key));
  const lora = new Map<string, { a: Value; b: Value }>(); // `${block}.${key}` → adapter
  if (trained.kind === 'lora') {
    for (let b = 0; b < c.numBlocks; b++) {
      for (const key of trained.targets) {
        const [out, inF] = specs.find((s) => s.block === b && s.kind === 'linear' && s.key === key)!.shape;
        const names = trained.names(b, key);
        lora.set(`${b}.${key}`, { a: trainedInput(names.a, [inF, trained.rank]), b: trainedInput(names.b, [trained.rank, out]) });
      }
    }
  }

  // ---- shapes known at run time
  const bt = g.op1('Shape', [ids]); // [B, T]
  const T = g.op1('Shape', [ids], { start: attr.int(1), end: attr.int(2) }); // [1]
  const target = (...tail: number[]) => g.op1('Concat', [bt, i64(...tail)], { axis: attr.int(0) });
  const toQ = target(nh, d);
  const toKv = target(nkv, d);
  const toGroups = target(nkv, group, d);
  const toKvGroups = target(nkv, 1, d);
  const toRows = i64(-1, nh * d);

  // ---- RoPE tables and the causal mask, for positions 0 … T−1
  const rope = ropeAngles(d, c.ropeTheta, 0, c.maxPositions);
  const scalar = (v: string) => g.op1('Squeeze', [v, i64(0)]);
  const pos = g.op1('Range', [g.int64([0], true), scalar(T), g.int64([1], true)]); // [T]
  const table = (name: string, half: Float32Array) => {
    const full = g.floats(name, [c.maxPositions, d], fullWidth(half, d / 2));
    return t.value(g.op1('Unsqueeze', [g.op1('Gather', [full, pos]), i64(0, 2)]), [1, 'T', 1, d]); // [1, T, 1, d]
  };
  const cos = table('rope.cos', rope.cos);
  const sin = table('rope.sin', rope.sin);
  const future = g.op1('Greater', [pos, g.op1('Unsqueeze', [pos, i64(1)])]); // [T, T]: key after query
  const mask = t.value(g.op1('Where', [future, g.float(-1e9), g.float(0)]), ['T', 'T']);
  const scale = t.value(g.float(1 / Math.sqrt(d)), []);

  /** rope(x) = x·cos + rotate_half(x)·sin on [B, T, heads, d]; rotate_half([x1, x2]) = [−x2, x1]. */
  const applyRope = (x: Value): Value => {
    const [x1, x2] = t.split(x, -1, [d / 2, d / 2]);
    return t.add(t.mul(x, cos), t.mul(t.concat([t.neg(x2), x1], -1), sin));
  };

  const maskInputs = new Map<string, string>(); // mask.<layer>.<key> → input (read again by a recomputed layer)
  /** The adapter of block b's linear `key` applied to x [N, in] (with its dropout mask at layer l): s·dropout(x)·A·B, or null. */
  const adapterOut = (b: number, key: LinearKey, x: Value, l: number): Value | null => {
    const adapter = lora.get(`${b}.${key}`);
    if (!adapter || trained.kind !== 'lora') return null;
    let xin = x;
    if (trained.dropout) {
      const width = x.shape[1] as number;
      const id = `mask.${l}.${key}`;
      if (!maskInputs.has(id)) {
        maskInputs.set(id, g.input(id, DataType.FLOAT, ['N', width]));
        masks.push({ name: id, layer: l, width });
      }
      xin = t.mul(x, t.value(maskInputs.get(id)!, ['N', width]));
    }
    const low = t.mul(t.matmul(xin, use(adapter.a)), t.value(g.float(trained.scale), [])); // [N, r]
    return t.matmul(low, use(adapter.b));
  };

  // Linears that read the same input run as one Gemm on their weights stacked ([Σ out, in]: q|k|v, gate|up),
  // stacked once per physical block (and pass of recompute mode); the tape splits the gradient back to each weight.
  const stacked = new Map<string, Value>();
  const stack = (b: number, keys: LinearKey[]): Value => {
    const id = `${b}.${keys.join('|')}`;
    if (!stacked.has(id))
      stacked.set(
        id,
        keys.length === 1
          ? blockParam(b, 'linear', keys[0])
          : t.concat(
              keys.map((k) => blockParam(b, 'linear', k)),
              0,
            ),
      );
    return stacked.get(id)!;
  };
  /** Linears `keys` of block b on x [N, in] at layer l, each with its adapter: one output per key. */
  const linears = (b: number, keys: LinearKey[], x: Value, l: number): Value[] => {
    const w = stack(b, keys);
    const y = t.linear(x, w);
    const outs =
      keys.length === 1
        ? [y]
        : t.split(
            y,
            1,
            keys.map((k) => blockParam(b, 'linear', k).shape[0] as number),
          );
    return outs.map((o, i) => {
      const delta = adapterOut(b, keys[i], x, l);
      return delta ? t.add(o, delta) : o;
    });
  };
  const linear = (b: number, key: LinearKey, x: Value, l: number): Value => linears(b, [key], x, l)[0];

  /** Causal self-attention of layer l (block b) on normed x [N, H] → [N, H]. */
  const attention = (b: number, x: Value, l: number): Value => {
    const [qf, kf, v] = linears(b, ['q', 'k', 'v'], x, l);
    const q = applyRope(t.reshape(qf, toQ, ['B', 'T', nh, d]));
    const k = applyRope(t.reshape(kf, toKv, ['B', 'T', nkv, d]));
    // The query heads of one kv group side by side: q [B, nkv, group, T, d], k [B, nkv, 1, d, T], v [B, nkv, 1, T, d]
    const q5 = t.transpose(t.reshape(q, toGroups, ['B', 'T', nkv, group, d]), [0, 2, 3, 1, 4]);
    const k5 = t.transpose(t.reshape(k, toKvGroups, ['B', 'T', nkv, 1, d]), [0, 2, 3, 4, 1]);
    const v5 = t.transpose(t.reshape(v, toKvGroups, ['B', 'T', nkv, 1, d]), [0, 2, 3, 1, 4]);
    const probs = t.softmax(t.add(t.mul(t.matmul(q5, k5), scale), mask)); // [B, nkv, group, T, T]
    const out = t.transpose(t.matmul(probs, v5), [0, 3, 1, 2, 4]); // [B, T, nkv, group, d]
    return linear(b, 'o', t.reshape(out, toRows, ['N', nh * d]), l);
  };

  // ---- the layers, on the residual stream x [N, H]
  const eps = c.rmsNormEps;
  /** The gated MLP's activation (engine/model/mlp.ts). */
  const act = (x: Value): Value => {
    switch (c.hiddenAct) {
      case 'silu':
        return t.silu(x);
      case 'relu':
        return t.relu(x);
      case 'gelu':
        return t.gelu(x, 'none');
      case 'gelu_pytorch_tanh':
        return t.gelu(x, 'tanh');
    }
  };
  const layer = (x: Value, b: number, l: number): Value => {
    const a = t.add(x, attention(b, t.rmsNorm(x, blockParam(b, 'norm', 'input'), eps), l));
    const h = t.rmsNorm(a, blockParam(b, 'norm', 'post'), eps);
    const [gate, up] = linears(b, ['gate', 'up'], h, l);
    return t.add(a, linear(b, 'down', t.mul(act(gate), up), l));
  };
  const lossOf = (x: Value): Value => {
    g.scope = 'head';
    const logits = t.linear(t.rmsNorm(x, finalNorm, eps), head); // [N, V]
    return t.mul(t.sum(t.mul(t.crossEntropy(logits, targets), weights)), invDenom);
  };
  const x0 = t.gather(embed, t.value(g.op1('Reshape', [ids, i64(-1)]), ['N'])); // [N, H]
  let loss: Value;
  let grads: Map<string, string>;
  if (!inp.recompute) {
    let x = x0;
    schedule.forEach((b, l) => {
      g.scope = `layers.${l}`;
      x = layer(x, b, l);
    });
    loss = lossOf(x);
    g.scope = 'backward';
    grads = t.backward(loss, trainedValues);
  } else ({ loss, grads } = recomputed());

  /**
   * Recompute mode: the layers' forward pass detached, keeping each layer's
   * input; the head's backward; then from the last layer to the first, the
   * layer's forward again on its input and its backward from the gradient
   * that reaches it. Each parameter's gradient is the running sum over the
   * pieces that use it (head, layers, embedding).
   */
  function recomputed(): { loss: Value; grads: Map<string, string> } {
    detached = true;
    const inputs: Value[] = [];
    let x: Value = { ...x0, requiresGrad: false };
    schedule.forEach((b, l) => {
      g.scope = `layers.${l}`;
      inputs.push(x);
      x = layer(x, b, l);
    });
    detached = false;
    stacked.clear();
    const sums = new Map<string, string>();
    const add = (gs: Map<string, string | null>) => {
      for (const v of trainedValues) {
        const d = gs.get(v.name);
        if (!d) continue;
        const sum = sums.get(v.name);
        sums.set(v.name, sum ? g.op1('Add', [sum, d]) : d);
      }
    };
    const never = g.op1('Greater', [g.float(0), g.float(1)]);
    /** x + Where(false, d[0, 0], 0): the same values, with a data dependency on the gradient d. */
    const after = (x: string, d: string) => g.op1('Add', [x, g.op1('Where', [never, g.op1('Slice', [d, i64(0, 0), i64(1, 1)]), g.float(0)])]);
    // The head in row chunks, each one's backward before the next one's forward: one chunk's [rows, vocab] logits
    // and their softmax alive at a time.
    const headMark = t.mark();
    const top = t.value(x.name, x.shape, true);
    g.scope = 'head';
    const normed = t.rmsNorm(top, finalNorm, eps);
    const pieces = (v: string) => g.op('Split', [v], { axis: attr.int(0), num_outputs: attr.int(HEAD_CHUNKS) }, { numOutputs: HEAD_CHUNKS });
    const [rows, rowTargets, rowWeights] = [normed.name, targets.name, weights.name].map(pieces);
    const losses: string[] = [];
    const dRows: string[] = [];
    for (let k = 0; k < HEAD_CHUNKS; k++) {
      g.scope = `head.${k}`;
      const mark = t.mark();
      const xin = t.value(k ? after(rows[k], dRows[k - 1]) : rows[k], ['n', normed.shape[1]], true);
      const ce = t.crossEntropy(t.linear(xin, head), t.value(rowTargets[k], ['n']));
      const part = t.mul(t.sum(t.mul(ce, t.value(rowWeights[k], ['n']))), invDenom);
      losses.push(part.name);
      const gs = t.backwardFrom([[part, g.float(1)]], [xin, ...trainedValues], mark);
      add(gs);
      dRows.push(gs.get(xin.name)!);
    }
    const lossValue = t.value(g.op1('Sum', losses), []);
    g.scope = 'backward.head';
    const headGrads = t.backwardFrom([[normed, g.op1('Concat', dRows, { axis: attr.int(0) })]], [top, ...trainedValues], headMark);
    add(headGrads);
    let dy = headGrads.get(top.name)!;
    for (let l = schedule.length - 1; l >= 0; l--) {
      g.scope = `backward.layers.${l}`;
      const mark = t.mark();
      // The input made to depend on the gradient reaching the layer, so that ONNX Runtime neither merges this forward
      // with the first one nor runs it before that gradient exists.
      const xin = t.value(after(inputs[l].name, dy), inputs[l].shape, l > 0 || x0.requiresGrad);
      const y = layer(xin, schedule[l], l);
      stacked.clear();
      const gs = t.backwardFrom([[y, dy]], [xin, ...trainedValues], mark);
      add(gs);
      dy = gs.get(xin.name) ?? dy;
    }
    if (x0.requiresGrad) add(t.backwardFrom([[x0, dy]], trainedValues));
    return { loss: lossValue, grads: new Map(trainedValues.map((v) => [v.name, sums.get(v.name) ?? t.zerosLike(v)])) };
  }

  g.scope = '';
  g.op('Identity', [loss.name], {}, { outputs: ['loss'] });
  g.output('loss', DataType.FLOAT, []);
  for (const p of params) {
    g.op('Identity', [grads.get(p.name)!], {}, { outputs: [gradName(p.name)] });
    g.output(gradName(p.name), DataType.FLOAT, p.shape);
  }
  return { ...g.encode(OPSETS, TRAINING_WEIGHTS_FILE), params, masks };
}
