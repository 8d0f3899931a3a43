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

/** One kind of tensor of the architecture; a block tensor's `name` is relative to `model.layers.{b}.`. */
export type TensorDef =
  | { kind: 'embedding'; name: string; shape: (c: MobileLLMConfig) => number[] }
  | { kind: 'head'; name: string; shape: (c: MobileLLMConfig) => number[]; when: (c: MobileLLMConfig) => boolean }
  | { kind: 'norm'; key: string; name: string; shape: (c: MobileLLMConfig) => number[] }
  | { kind: 'linear'; key: LinearKey; name: string; shape: (c: MobileLLMConfig) => number[] };
type Def<K extends TensorDef['kind']> = Extract<TensorDef, { kind: K }>;

/** The architecture as data: the model-level tensors and a block's tensors in the order they run. */
export interface Layout {
  embedding: Def<'embedding'>;
  block: (Def<'norm'> | Def<'linear'>)[];
  finalNorm: Def<'norm'>;
  head: Def<'head'>;
}

/** The RMSNorm gains of a block: before attention, before the MLP. */
export const BLOCK_NORMS = ['input', 'post'] as const;
export type BlockNormKey = (typeof BLOCK_NORMS)[number];

const hidden = (c: MobileLLMConfig) => [c.hiddenSize];
const vocabByHidden = (c: MobileLLMConfig) => [c.vocabSize, c.hiddenSize];
const linear = (key: LinearKey): Def<'linear'> => ({ kind: 'linear', key, name: `${LINEAR_NAMES[key]}.weight`, shape: (c) => linearShapes(c)[key] });
const blockNorm = (key: BlockNormKey, name: string): Def<'norm'> => ({ kind: 'norm', key, name, shape: hidden });

export const MOBILELLM_LAYOUT: Layout = {
  embedding: { kind: 'embedding', name: 'model.embed_tokens.weight', shape: vocabByHidden },
  block: [
    blockNorm('input', 'input_layernorm.weight'),
    linear('q'),
    linear('k'),
    linear('v'),
    linear('o'),
    blockNorm('post', 'post_attention_layernorm.weight'),
    linear('gate'),
    linear('up'),
    linear('down'),
  ],
  finalNorm: { kind: 'norm', key: 'final', name: 'model.norm.weight', shape: hidden },
  head: { kind: 'head', name: 'lm_head.weight', shape: vocabByHidden, when: (c) => !c.shareEmbedding },
};

/** One tensor of one model. */
export type TensorSpec = {
  /** Checkpoint name, e.g. model.layers.3.mlp.up_proj.weight. */
  name: string;
  /** The name without ".weight": the module, e.g. model.layers.3.mlp.up_proj. */
  module: string;
  /** Checkpoint layout ([out, in] for linears and the head). */
  shape: number[];
  /** Physical block, for block tensors. */
  block?: number;
  /** Effective layers that read it (every layer for the embedding, final norm and head). */
  layers: number[];
} & ({ kind: 'embedding' | 'head' } | { kind: 'norm'; key: string } | { kind: 'linear'; key: LinearKey });

export const blockPrefix = (b: number): string => `model.layers.${b}`;
const moduleOf = (name: string): string => name.replace(/\.weight$/, '');

/** Every unique tensor of a model with config `c`, in checkpoint order (a shared block once, a tied head not at all). */
export function tensorSpecs(c: MobileLLMConfig, layout: Layout = MOBILELLM_LAYOUT): TensorSpec[] {
  const schedule = layerSchedule(c);
  const all = schedule.map((_, l) => l);
  const uses = usesPerBlock(schedule, c.numBlocks);
  const model = (d: Def<'embedding'> | Def<'head'> | Def<'norm'>): TensorSpec =>
    d.kind === 'norm'
      ? { kind: 'norm', key: d.key, name: d.name, module: moduleOf(d.name), shape: d.shape(c), layers: all }
      : { kind: d.kind, name: d.name, module: moduleOf(d.name), shape: d.shape(c), layers: all };
  const out: TensorSpec[] = [model(layout.embedding)];
  for (let b = 0; b < c.numBlocks; b++) {
    for (const d of layout.block) {
      const name = `${blockPrefix(b)}.${d.name}`;
      const at = { name, module: moduleOf(name), shape: d.shape(c), block: b, layers: uses[b] };
      out.push(d.kind === 'norm' ? { kind: 'norm', key: d.key, ...at } : { kind: 'linear', key: d.key, ...at });
    }
  }
  out.push(model(layout.finalNorm));
  if (layout.head.when(c)) out.push(model(layout.head));
  return out;
}

/** The module of linear `key` of block `b` (its name without ".weight"), e.g. model.layers.3.mlp.up_proj. */
export const linearModule = (b: number, key: LinearKey): string => `${blockPrefix(b)}.${LINEAR_NAMES[key]}`;

/** Checkpoint name → expected shape. */
export function expectedShapes(c: MobileLLMConfig, layout: Layout = MOBILELLM_LAYOUT): Map<string, number[]> {
  return new Map(tensorSpecs(c, layout).map((s) => [s.name, s.shape]));
}
