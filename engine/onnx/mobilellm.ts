// MobileLLM as one ONNX graph with a KV cache: the same graph serves the
// prompt (past length 0) and every decode step, so the weights are held once.
//
//   input_ids [B, T] ─ Gather(embed) ─ effective layers (physical blocks in
//   sharing order) ─ final RMSNorm ─ last `num_logits` positions ─ head ─ logits [B, N, V]
//
// A shared block's weights are initializers added once, read by every layer
// that runs it; each effective layer has its own cache slot.
//
// The cache lives in the caller's buffers, past.{l}.key/value [B, kvHeads,
// capacity, d], of which the first total_sequence_length − T rows are valid;
// the graph returns only this step's rows, new.{l}.key/value [B, kvHeads, T, d]
// (keys rotated), for the caller to append. (onnxruntime-node hands every
// output back as a fresh JS buffer, at a cost that grows with its size: a
// whole present cache per layer and step would cost more than the model.)
//
// Two operator sets, selectable, that must agree:
//   plain    standard ONNX operators only: RMSNorm written out, rotate-half
//            RoPE, attention with Concat(past, new) and an explicit causal
//            mask; weight-only quantized layers dequantized with standard
//            operators (a reference: ONNX Runtime may fold them into floats).
//   contrib  ONNX Runtime's fused operators (com.microsoft): (Skip)Simplified-
//            LayerNormalization; GroupQueryAttention with rotary inside (needs
//            head_dim a multiple of 16, else plain attention); MatMulNBits for
//            weight-only quantized layers.
//
// Two interfaces (`io`):
//   engine           the above: the caller's cache buffers in, this step's rows out.
//   transformers.js  the inputs and outputs Hugging Face Optimum exports and
//                    transformers.js feeds: input_ids, attention_mask [B, past + T]
//                    (0 = padding), position_ids [B, T] (the RoPE positions),
//                    past_key_values.{l}.key/value [B, kvHeads, past, d] in,
//                    logits [B, T, V] of every position and present.{l}.key/value
//                    [B, kvHeads, past + T, d] (past and new concatenated) out.
//                    Plain operators only; a layer-shared block still has one
//                    set of initializers, and every effective layer its own cache.
//
// Either way a float head is Gemm(transB=1) on the [vocab, hidden] table
// itself, shared with the embedding lookup (a MatMul against a transposed
// embedding would make constant folding store a second, transposed copy).
// Quantized weights stay integer (linear.ts, quantized.ts).
import type { HiddenAct, MobileLLMConfig } from '../model/config';
import type { MobileLLM } from '../model/model';
import { fullWidth, ropeAngles } from '../model/rope';
import { LINEAR_NAMES, blockPrefix, linearModule, type LinearKey } from '../model/layout';
import { DataType } from './proto';
import { GraphBuilder, MS_DOMAIN, attr } from './graph';
import { linearOp, paramBytes, tableOps, type WeightOptions } from './linear';
import { modelParams, type FloatParam, type ModelParams } from './params';
import { SERVED_NBITS_COMPUTE, type NBitsCompute } from './quantized';

export const ONNX_OPS = ['contrib', 'plain'] as const;
export type OnnxOps = (typeof ONNX_OPS)[number];

export const GRAPH_IOS = ['engine', 'transformers.js'] as const;
export type GraphIo = (typeof GRAPH_IOS)[number];

/** How to feed a graph and read its cache. */
export interface GraphSignature {
  ops: OnnxOps;
  /** GroupQueryAttention (contrib, head_dim a multiple of 16), else attention written out. */
  fusedAttention: boolean;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
}

export interface ExportOptions {
  /** Default contrib. */
  ops?: OnnxOps;
  /** Operators of weight-only quantized layers (MatMulNBits for contrib, else dequantized); default `ops`. */
  weightOps?: OnnxOps;
  /** Inputs and outputs; default engine (OnnxCache). transformers.js needs plain `ops`. */
  io?: GraphIo;
  /** The external file the model names for its large initializers; default WEIGHTS_FILE. */
  weightsFile?: string;
  /** Keep every initializer inside the model when they total at most this many bytes; default 0 (always external). */
  inlineWeightsUpTo?: number;
  /** Arithmetic of weight-only quantized layers (MatMulNBits); default what the chat serves (SERVED_NBITS_COMPUTE). */
  nbitsCompute?: NBitsCompute;
}

/** The name under which the model refers to its weights buffer. */
export const WEIGHTS_FILE = 'weights.bin';

export interface ExportedGraph {
  config: MobileLLMConfig;
  /** The serialized ModelProto, without its large initializers. */
  model: Uint8Array;
  /** The large initializers (the external file WEIGHTS_FILE): a copy of every weight, to drop once a session holds them. */
  weights: Uint8Array;
  signature: GraphSignature;
}

const OPSETS = [
  { domain: '', version: 21 },
  { domain: MS_DOMAIN, version: 1 },
];

/** The operator sets a graph uses: the standard one, and com.microsoft only when a node is in it. */
function opsetsOf(g: GraphBuilder): typeof OPSETS {
  return OPSETS.filter((o) => o.domain === '' || g.nodes.some((n) => n.domain === o.domain));
}

/** GroupQueryAttention's CPU kernel needs head_dim % 16 == 0. */
function canUseGqa(headDim: number): boolean {
  return headDim % 16 === 0;
}

/** A physical block's weights in the graph, applied by every effective layer that runs it. */
interface BlockOps {
  /** The block's norm gains by layout key (input, post). */
  norms: Record<string, string>;
  qkv: (x: string) => string; // [B, T, H] → [B, T, (nh + 2·nkv)·d]
  o: (x: string) => string;
  gate: (x: string) => string;
  up: (x: string) => string;
  down: (x: string) => string;
}

/** The gated MLP's activation (engine/model/mlp.ts) in standard operators; Gelu is opset 20's. */
function activation(g: GraphBuilder, act: HiddenAct, x: string): string {
  switch (act) {
    case 'silu':
      return g.op1('Mul', [x, g.op1('Sigmoid', [x])]);
    case 'relu':
      return g.op1('Relu', [x]);
    case 'gelu':
    case 'gelu_pytorch_tanh':
      return g.op1('Gelu', [x], { approximate: attr.string(act === 'gelu' ? 'none' : 'tanh') });
  }
}

/** Exports a model in memory. */
export function exportMobileLLM(model: MobileLLM, opts: ExportOptions = {}): ExportedGraph {
  return exportGraph(modelParams(model), opts);
}

/** Builds and serializes the graph of a model, reading its weights from `params`. */
export function exportGraph(params: ModelParams, opts: ExportOptions = {}): ExportedGraph {
  const ops = opts.ops ?? 'contrib';
  const hfIo = opts.io === 'transformers.js';
  if (hfIo && ops !== 'plain') throw new Error('the transformers.js interface is built with plain operators (ops: "plain")');
  const wopts: WeightOptions = { ops: opts.weightOps ?? ops, nbitsCompute: opts.nbitsCompute ?? SERVED_NBITS_COMPUTE };
  const c = params.config;
  const { numHeads: nh, numKvHeads: nkv, headDim: d, hiddenSize: H, vocabSize: V } = c;
  const group = nh / nkv;
  const useGqa = ops === 'contrib' && canUseGqa(d);
  const g = new GraphBuilder('mobilellm');
  const i64 = (...v: number[]) => g.int64(v);

  // ---- inputs
  const io = hfIo ? transformersInputs(g, params.schedule.length, nkv, d) : engineInputs(g, params.schedule.length, nkv, d);
  const { ids, past, pastLen, totalLen } = io;
  const newRows = (present: string, name: string) => g.op('Slice', [present, pastLen, totalLen, i64(2)], {}, { outputs: [name] })[0];

  // ---- weights (each physical block once): every tensor of the layout is an initializer
  const norms = new Map<string, string>(); // module → initializer
  for (const s of params.specs) {
    if (s.kind === 'norm') norms.set(s.module, g.initializer(s.name, DataType.FLOAT, s.shape, paramBytes(params.get(s.module) as FloatParam)));
  }
  const table = (kind: 'embedding' | 'head') => {
    const { module } = params.specs.find((s) => s.kind === kind)!;
    return tableOps(g, module, params.get(module), wopts);
  };
  const embed = table('embedding');
  const blockOps: BlockOps[] = Array.from({ length: c.numBlocks }, (_, i) => {
    const specs = params.specs.filter((s) => s.block === i);
    /** Linear `name` applying the weights of linears `keys`, fused side by side. */
    const lin = (name: string, ...keys: LinearKey[]) =>
      linearOp(
        g,
        `${blockPrefix(i)}.${name}`,
        keys.map((k) => params.get(linearModule(i, k))),
        wopts,
      );
    return {
      norms: Object.fromEntries(specs.flatMap((s) => (s.kind === 'norm' ? [[s.key, norms.get(s.module)!]] : []))),
      qkv: lin('self_attn.qkv_proj', 'q', 'k', 'v'),
      o: lin(LINEAR_NAMES.o, 'o'),
      gate: lin(LINEAR_NAMES.gate, 'gate'),
      up: lin(LINEAR_NAMES.up, 'up'),
      down: lin(LINEAR_NAMES.down, 'down'),
    };
  });
  const finalNorm = norms.get(params.specs.find((s) => s.kind === 'norm' && s.block === undefined)!.module)!;
  const head = c.shareEmbedding ? embed : table('head');
  const rope = ropeAngles(d, c.ropeTheta, 0, c.maxPositions);

  // ---- RMSNorm and the residual stream
  const eps = c.rmsNormEps;
  const rmsNorm = (x: string, gain: string): string => {
    if (ops === 'contrib') return g.op1('SimplifiedLayerNormalization', [x, gain], { axis: attr.int(-1), epsilon: attr.float(eps) });
    // x / sqrt(mean(x²) + eps) · gain
    const meanSq = g.op1('ReduceMean', [g.op1('Mul', [x, x]), i64(-1)], { keepdims: attr.int(1) });
    const rms = g.op1('Sqrt', [g.op1('Add', [meanSq, g.float(eps)])]);
    return g.op1('Mul', [g.op1('Div', [x, rms]), gain]);
  };
  /** residual + delta, and its RMSNorm. */
  const addNorm = (residual: string, delta: string, gain: string): { sum: string; normed: string } => {
    if (ops === 'contrib') {
      // outputs: normed, mean and 1/std (not wanted), residual + delta
      const [normed, , , sum] = g.op(
        'SkipSimplifiedLayerNormalization',
        [residual, delta, gain],
        { epsilon: attr.float(eps) },
        { domain: MS_DOMAIN, outputs: [g.fresh('normed'), '', '', g.fresh('residual')] },
      );
      return { sum, normed };
    }
    const sum = g.op1('Add', [residual, delta]);
    return { sum, normed: rmsNorm(sum, gain) };
  };

  // ---- attention
  let attend: (b: BlockOps, x: string, layer: number) => string;
  if (useGqa) {
    const cosCache = g.floats('rope.cos', [c.maxPositions, d / 2], rope.cos);
    const sinCache = g.floats('rope.sin', [c.maxPositions, d / 2], rope.sin);
    attend = (b, x, l) => {
      // Packed q|k|v [B, T, (nh + 2·nkv)·d]; rotary, causal softmax over the valid past and the new rows in one
      // kernel, which also writes past + new into present [B, nkv, ≥ total, d] (ours to read, not to return).
      const [out, presentK, presentV] = g.op(
        'GroupQueryAttention',
        [b.qkv(x), '', '', past[l].key, past[l].value, io.seqlensK!, io.totalLength!, cosCache, sinCache],
        { num_heads: attr.int(nh), kv_num_heads: attr.int(nkv), do_rotary: attr.int(1) },
        { domain: MS_DOMAIN, numOutputs: 3 },
      );
      newRows(presentK, `new.${l}.key`);
      newRows(presentV, `new.${l}.value`);
      return b.o(out);
    };
  } else {
    const cosTable = g.floats('rope.cos', [c.maxPositions, d], fullWidth(rope.cos, d / 2));
    const sinTable = g.floats('rope.sin', [c.maxPositions, d], fullWidth(rope.sin, d / 2));
    const scalar = (v: string) => g.op1('Squeeze', [v, i64(0)]);
    const qPos = g.op1('Range', [scalar(pastLen), scalar(totalLen), g.int64([1], true)]); // [T]
    const kPos = g.op1('Range', [g.int64([0], true), scalar(totalLen), g.int64([1], true)]); // [S]
    // RoPE at the query positions: [1, T, 1, d] (engine), or [B, T, 1, d] at position_ids (transformers.js).
    const ropeAt = (table: string) =>
      io.positionIds ? g.op1('Unsqueeze', [g.op1('Gather', [table, io.positionIds]), i64(2)]) : g.op1('Unsqueeze', [g.op1('Gather', [table, qPos]), i64(0, 2)]);
    const cos = ropeAt(cosTable);
    const sin = ropeAt(sinTable);
    // Causal mask [T, S]: query t sees keys 0 … past + t; with an attention mask, not the padded keys either: [B, 1, 1, T, S].
    let hidden = g.op1('Greater', [kPos, g.op1('Unsqueeze', [qPos, i64(1)])]);
    if (io.attentionMask) {
      const padding = g.op1('Equal', [io.attentionMask, g.int64([0], true)]); // [B, S]
      hidden = g.op1('Unsqueeze', [g.op1('Or', [hidden, g.op1('Unsqueeze', [padding, i64(1)])]), i64(1, 2)]);
    }
    const mask = g.op1('Where', [hidden, g.float(-1e9), g.float(0)]);
    const scale = g.float(1 / Math.sqrt(d));
    /** rope(x) = x·cos + rotate_half(x)·sin on [B, T, heads, d]; rotate_half([x1, x2]) = [−x2, x1]. */
    const applyRope = (x: string): string => {
      const x1 = g.op1('Slice', [x, i64(0), i64(d / 2), i64(-1)]);
      const x2 = g.op1('Slice', [x, i64(d / 2), i64(d), i64(-1)]);
      const rotated = g.op1('Concat', [g.op1('Neg', [x2]), x1], { axis: attr.int(-1) });
      return g.op1('Add', [g.op1('Mul', [x, cos]), g.op1('Mul', [rotated, sin])]);
    };
    const [qOut, kvOut] = [nh * d, nkv * d];
    attend = (b, x, l) => {
      const [q, k, v] = g.op('Split', [b.qkv(x), i64(qOut, kvOut, kvOut)], { axis: attr.int(-1) }, { numOutputs: 3 });
      // Query heads of one kv group side by side: [B, nkv, group, T, d]
      const q5 = g.op1('Transpose', [g.op1('Reshape', [applyRope(g.op1('Reshape', [q, i64(0, 0, nh, d)])), i64(0, 0, nkv, group, d)])], {
        perm: attr.ints([0, 2, 3, 1, 4]),
      });
      // Engine: this step's rows are outputs, appended to the first `past` rows of the buffers.
      // transformers.js: the whole past is valid, and past + new is the output.
      const newName = (kind: string) => ({ outputs: [hfIo ? g.fresh(`new_${kind}`) : `new.${l}.${kind}`] });
      const [kNew] = g.op('Transpose', [applyRope(g.op1('Reshape', [k, i64(0, 0, nkv, d)]))], { perm: attr.ints([0, 2, 1, 3]) }, newName('key')); // [B, nkv, T, d]
      const [vNew] = g.op('Transpose', [g.op1('Reshape', [v, i64(0, 0, nkv, d)])], { perm: attr.ints([0, 2, 1, 3]) }, newName('value'));
      const valid = (t: string) => (hfIo ? t : g.op1('Slice', [t, i64(0), pastLen, i64(2)])); // the first `past` rows
      const allName = (kind: string) => ({ outputs: [hfIo ? `present.${l}.${kind}` : g.fresh(`all_${kind}`)] });
      const [kAll] = g.op('Concat', [valid(past[l].key), kNew], { axis: attr.int(2) }, allName('key')); // [B, nkv, S, d]
      const [vAll] = g.op('Concat', [valid(past[l].value), vNew], { axis: attr.int(2) }, allName('value'));
      const kT = g.op1('Transpose', [g.op1('Unsqueeze', [kAll, i64(2)])], { perm: attr.ints([0, 1, 2, 4, 3]) }); // [B, nkv, 1, d, S]
      const scores = g.op1('Add', [g.op1('Mul', [g.op1('MatMul', [q5, kT]), scale]), mask]); // [B, nkv, group, T, S]
      const probs = g.op1('Softmax', [scores], { axis: attr.int(-1) });
      const out = g.op1('MatMul', [probs, g.op1('Unsqueeze', [vAll, i64(2)])]); // [B, nkv, group, T, d]
      const merged = g.op1('Reshape', [g.op1('Transpose', [out], { perm: attr.ints([0, 3, 1, 2, 4]) }), i64(0, 0, nh * d)]); // [B, T, nh·d]
      return b.o(merged);
    };
  }

  // ---- the layers
  let x = embed.lookup(ids); // [B, T, H]
  let normed = '';
  let pending = ''; // the last MLP output, not yet added to x
  params.schedule.forEach((blockIndex, l) => {
    const b = blockOps[blockIndex];
    g.scope = `layers.${l}`;
    if (l === 0) normed = rmsNorm(x, b.norms.input);
    else ({ sum: x, normed } = addNorm(x, pending, b.norms.input));
    const a = attend(b, normed, l);
    ({ sum: x, normed } = addNorm(x, a, b.norms.post));
    pending = b.down(g.op1('Mul', [activation(g, c.hiddenAct, b.gate(normed)), b.up(normed)]));
  });
  g.scope = 'head';
  const final = addNorm(x, pending, finalNorm).normed; // [B, T, H]

  // ---- logits of the last num_logits positions (engine), or of every position (transformers.js): [B, N, V]
  const last = io.numLogits ? g.op1('Slice', [final, g.op1('Neg', [io.numLogits]), i64(2 ** 53), i64(1)]) : final;
  const flat = head.head(g.op1('Reshape', [last, i64(-1, H)])); // [B·N, V]
  const batch = g.op1('Shape', [ids], { start: attr.int(0), end: attr.int(1) });
  g.op('Reshape', [flat, g.op1('Concat', [batch, i64(-1, V)], { axis: attr.int(0) })], {}, { outputs: ['logits'] });

  if (hfIo) {
    g.output('logits', DataType.FLOAT, ['batch_size', 'sequence_length', V]);
    params.schedule.forEach((_, l) => {
      g.output(`present.${l}.key`, DataType.FLOAT, ['batch_size', nkv, 'total_sequence_length', d]);
      g.output(`present.${l}.value`, DataType.FLOAT, ['batch_size', nkv, 'total_sequence_length', d]);
    });
  } else {
    g.output('logits', DataType.FLOAT, ['batch', 'num_logits', V]);
    params.schedule.forEach((_, l) => {
      g.output(`new.${l}.key`, DataType.FLOAT, ['batch', nkv, 'sequence', d]);
      g.output(`new.${l}.value`, DataType.FLOAT, ['batch', nkv, 'sequence', d]);
    });
  }
  const signature: GraphSignature = {
    ops,
    fusedAttention: useGqa,
    numLayers: params.schedule.length,
    kvHeads: nkv,
    headDim: d,
    vocabSize: V,
    maxPositions: c.maxPositions,
  };
  return { config: c, ...g.encode(opsetsOf(g), opts.weightsFile ?? WEIGHTS_FILE, opts.inlineWeightsUpTo ?? 0), signature };
}

/** The graph's inputs, and the past and total lengths (int64 [1]) derived from them. */
interface GraphInputs {
  ids: string;
  past: { key: string; value: string }[];
  /** Rows of the cache before this step; this step's positions are pastLen … totalLen − 1. */
  pastLen: string;
  totalLen: string;
  /** engine: how many last positions get logits; the GroupQueryAttention lengths. */
  numLogits?: string;
  seqlensK?: string;
  totalLength?: string;
  /** transformers.js: int64 [B, S] (0 = padding) and [B, T]. */
  attentionMask?: string;
  positionIds?: string;
}

function engineInputs(g: GraphBuilder, layers: number, nkv: number, d: number): GraphInputs {
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const numLogits = g.input('num_logits', DataType.INT64, [1]);
  const past = Array.from({ length: layers }, (_, l) => ({
    key: g.input(`past.${l}.key`, DataType.FLOAT, ['batch', nkv, 'capacity', d]),
    value: g.input(`past.${l}.value`, DataType.FLOAT, ['batch', nkv, 'capacity', d]),
  }));
  const seqlensK = g.input('seqlens_k', DataType.INT32, ['batch']); // total − 1 per row
  const totalLength = g.input('total_sequence_length', DataType.INT32, []);
  // Valid past rows and the total, as int64 [1]: past … total−1 are this step's positions.
  const totalLen = g.op1('Cast', [g.op1('Reshape', [totalLength, g.int64([1])])], { to: attr.int(DataType.INT64) });
  const pastLen = g.op1('Sub', [totalLen, g.op1('Shape', [ids], { start: attr.int(1), end: attr.int(2) })]);
  return { ids, past, pastLen, totalLen, numLogits, seqlensK, totalLength };
}

/** Optimum's decoder inputs; symbolic dimensions named as transformers.js resolves them for an empty cache (batch_size, else 0). */
function transformersInputs(g: GraphBuilder, layers: number, nkv: number, d: number): GraphInputs {
  const ids = g.input('input_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  const past = Array.from({ length: layers }, (_, l) => ({
    key: g.input(`past_key_values.${l}.key`, DataType.FLOAT, ['batch_size', nkv, 'past_sequence_length', d]),
    value: g.input(`past_key_values.${l}.value`, DataType.FLOAT, ['batch_size', nkv, 'past_sequence_length', d]),
  }));
  const pastLen = g.op1('Shape', [past[0].key], { start: attr.int(2), end: attr.int(3) });
  const totalLen = g.op1('Add', [pastLen, g.op1('Shape', [ids], { start: attr.int(1), end: attr.int(2) })]);
  return { ids, past, pastLen, totalLen, attentionMask, positionIds };
}
