// The parameter layout of a MobileLLM: every tensor a config implies, with its
// Hugging Face name, its shape in the checkpoint's layout ([out, in] for a
// linear), what it is, the physical block it belongs to and the effective
// layers that use it. Load, save, quantized checkpoints, quantization, the
// ONNX graph, LoRA targets and the inspector all iterate this one list:
// adding a tensor to the architecture is one edit here.
//
//   model.embed_tokens.weight                  [V, H]      embedding (also the head when share_embedding)
//   model.layers.{b}.input_layernorm.weight    [H]         norm        ┐
//   model.layers.{b}.self_attn.{q,k,v,o}_proj  [·, ·]      linear      │ one physical block b,
//   model.layers.{b}.post_attention_layernorm  [H]         norm        │ run by every effective layer
//   model.layers.{b}.mlp.{gate,up,down}_proj   [·, ·]      linear      ┘ whose schedule entry is b
//   model.norm.weight                          [H]         norm
//   lm_head.weight                             [V, H]      head (only without share_embedding)
import { layerSchedule, type MobileLLMConfig } from './config';
import { usesPerBlock } from './sharing';

/** The seven linears of a block, by key, and their names under `model.layers.{b}.`. */
export const LINEAR_NAMES = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
} as const;
export type LinearKey = keyof typeof LINEAR_NAMES;
export const LINEAR_KEYS = Object.keys(LINEAR_NAMES) as [LinearKey, ...LinearKey[]];

/** [out, in] of each linear of a block, in the checkpoint's layout. */
export function linearShapes(c: MobileLLMConfig): Record<LinearKey, [number, number]> {
  const H = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  return {
    q: [qOut, H],
    k: [kvOut, H],
    v: [kvOut, H],
    o: [H, qOut],
    gate: [c.intermediateSize, H],
    up: [c.intermediateSize, H],
    down: [H, c.intermediateSize],
  };
}

/** One kind of tensor of the architecture; `name` is relative to `model.layers.{b}.` for block tensors. */
export type TensorDef =
  | { kind: 'embedding'; name: string; shape: (c: MobileLLMConfig) => number[] }
  | { kind: 'head'; name: string; shape: (c: MobileLLMConfig) => number[]; when: (c: MobileLLMConfig) => boolean }
  | { kind: 'norm'; scope: 'model' | 'block'; key: string; name: string; shape: (c: MobileLLMConfig) => number[] }
  | { kind: 'linear'; key: LinearKey; name: string; shape: (c: MobileLLMConfig) => number[] };

/** The architecture as data: model-level tensors, then the tensors of each block, in checkpoint order. */
export interface Layout {
  embedding: Extract<TensorDef, { kind: 'embedding' }>;
  /** Norms of a block, by the key the model's weights hold them under. */
  blockNorms: Extract<TensorDef, { kind: 'norm' }>[];
  linears: Extract<TensorDef, { kind: 'linear' }>[];
  finalNorm: Extract<TensorDef, { kind: 'norm' }>;
  head: Extract<TensorDef, { kind: 'head' }>;
}

const hidden = (c: MobileLLMConfig) => [c.hiddenSize];
const vocabByHidden = (c: MobileLLMConfig) => [c.vocabSize, c.hiddenSize];

export const MOBILELLM_LAYOUT: Layout = {
  embedding: { kind: 'embedding', name: 'model.embed_tokens.weight', shape: vocabByHidden },
  blockNorms: [
    { kind: 'norm', scope: 'block', key: 'inputNorm', name: 'input_layernorm.weight', shape: hidden },
    { kind: 'norm', scope: 'block', key: 'postNorm', name: 'post_attention_layernorm.weight', shape: hidden },
  ],
  linears: LINEAR_KEYS.map((key) => ({ kind: 'linear', key, name: `${LINEAR_NAMES[key]}.weight`, shape: (c) => linearShapes(c)[key] })),
  finalNorm: { kind: 'norm', scope: 'model', key: 'norm', name: 'model.norm.weight', shape: hidden },
  head: { kind: 'head', name: 'lm_head.weight', shape: vocabByHidden, when: (c) => !c.shareEmbedding },
};

/** One tensor of one model. */
export type TensorSpec = {
  name: string;
  /** Checkpoint layout ([out, in] for linears and the head). */
  shape: number[];
  /** Physical block, for block tensors. */
  block?: number;
  /** Effective layers that read it (every layer for the embedding and final norm). */
  layers: number[];
} & (
  | { kind: 'embedding' | 'head' }
  | { kind: 'norm'; key: string }
  | { kind: 'linear'; key: LinearKey }
);

export const blockPrefix = (b: number): string => `model.layers.${b}`;

/** Every unique tensor of a model with config `c`, in checkpoint order. */
export function tensorSpecs(c: MobileLLMConfig, layout: Layout = MOBILELLM_LAYOUT): TensorSpec[] {
  const schedule = layerSchedule(c);
  const all = schedule.map((_, l) => l);
  const uses = usesPerBlock(schedule, c.numBlocks);
  const out: TensorSpec[] = [{ kind: 'embedding', name: layout.embedding.name, shape: layout.embedding.shape(c), layers: all }];
  for (let b = 0; b < c.numBlocks; b++) {
    const p = blockPrefix(b);
    const at = { block: b, layers: uses[b] };
    for (const n of layout.blockNorms) out.push({ kind: 'norm', key: n.key, name: `${p}.${n.name}`, shape: n.shape(c), ...at });
    for (const l of layout.linears) out.push({ kind: 'linear', key: l.key, name: `${p}.${l.name}`, shape: l.shape(c), ...at });
  }
  const f = layout.finalNorm;
  out.push({ kind: 'norm', key: f.key, name: f.name, shape: f.shape(c), layers: all });
  if (layout.head.when(c)) out.push({ kind: 'head', name: layout.head.name, shape: layout.head.shape(c), layers: all });
  return out;
}

/** The checkpoint name of linear `key` of block `b`. */
export const linearName = (b: number, key: LinearKey, layout: Layout = MOBILELLM_LAYOUT): string =>
  `${blockPrefix(b)}.${layout.linears.find((l) => l.key === key)!.name}`;

/** Checkpoint name → expected shape. */
export function expectedShapes(c: MobileLLMConfig, layout: Layout = MOBILELLM_LAYOUT): Map<string, number[]> {
  return new Map(tensorSpecs(c, layout).map((s) => [s.name, s.shape]));
}
