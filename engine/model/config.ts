// MobileLLMConfig: the architecture, read from a Hugging Face config.json in
// either dialect — MobileLLM hub style (`model_type: mobilellm`,
// `share_embedding`, `layer_sharing`) or plain LlamaForCausalLM
// (`tie_word_embeddings`) — and written back so that transformers loads it
// as it is, or refuses it loudly:
//
//   unshared     model_type llama, LlamaForCausalLM: AutoModelForCausalLM loads it with no extra code
//   layer-shared model_type mobilellm + auto_map → modeling_mobilellm.py beside it (resources/export/):
//                trust_remote_code=True runs the schedule; without it AutoConfig refuses the unknown type
//                (a llama type would load the physical blocks only: a shallower model without a word)
//   quantized    model_type mobilellm and a quantization_config without quant_method, which
//                transformers refuses (an unknown quant_method it skips, loading random weights)
import { z } from 'zod';
import { CONFIG_LIMITS } from './limits';
import { sharingSchedule, SHARING_STRATEGIES, type LayerSharing } from './sharing';

/**
 * The gated MLP's activation, by its transformers name (LlamaMLP's ACT2FN):
 * down(act(gate(x)) ⊙ up(x)) is SwiGLU (silu, MobileLLM's), ReGLU (relu) or
 * GeGLU (gelu: exact, with erf; gelu_pytorch_tanh: the tanh approximation).
 */
export const HIDDEN_ACTS = ['silu', 'relu', 'gelu', 'gelu_pytorch_tanh'] as const;
export type HiddenAct = (typeof HIDDEN_ACTS)[number];
/** The gated MLP's usual name, for people. */
export const GATED_MLP_NAMES: Record<HiddenAct, string> = { silu: 'SwiGLU', relu: 'ReGLU', gelu: 'GeGLU', gelu_pytorch_tanh: 'GeGLU (tanh)' };

export interface MobileLLMConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  hiddenAct: HiddenAct;
  /** Physical (unique) decoder blocks. */
  numBlocks: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositions: number;
  /** Output head reuses the input embedding (no lm_head.weight). */
  shareEmbedding: boolean;
  sharing: LayerSharing;
  bosTokenId: number;
  eosTokenId: number;
  /** dtype the checkpoint was stored in (informational; we compute in float32). */
  torchDtype: string;
}

const positiveInt = z.number().int().positive();
/** A size of at most `max` (engine/model/limits.ts). */
const size = (max: number) => positiveInt.max(max, `at most ${max}`);
const tokenId = z.number().int().nonnegative();

/** The keys of config.json we read. Unknown keys are ignored; unsupported values are refused. */
const HfConfigSchema = z
  .object({
    model_type: z.string().optional(),
    vocab_size: size(CONFIG_LIMITS.vocabSize),
    hidden_size: size(CONFIG_LIMITS.hiddenSize),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize),
    num_hidden_layers: size(CONFIG_LIMITS.layers),
    num_attention_heads: size(CONFIG_LIMITS.heads),
    num_key_value_heads: size(CONFIG_LIMITS.heads).optional(),
    head_dim: size(CONFIG_LIMITS.headDim).nullish(),
    rms_norm_eps: z.number().positive().default(1e-5),
    rope_theta: z.number().positive().optional(),
    /** transformers 5 writes rope_theta (and the scaling) here. */
    rope_parameters: z.object({ rope_theta: z.number().positive().optional(), rope_type: z.string().optional() }).passthrough().nullish(),
    max_position_embeddings: size(CONFIG_LIMITS.maxPositions).default(2048),
    hidden_act: z.string().default('silu'),
    share_embedding: z.boolean().optional(),
    tie_word_embeddings: z.boolean().optional(),
    layer_sharing: z.boolean().optional(),
    layer_sharing_strategy: z.enum(SHARING_STRATEGIES).optional(),
    layer_sharing_repeats: size(CONFIG_LIMITS.sharingRepeats).optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    rope_scaling: z.unknown().optional(),
    bos_token_id: tokenId.nullish(),
    eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
    torch_dtype: z.string().nullish(),
    /** transformers 5 writes `dtype` where 4.x wrote `torch_dtype`. */
    dtype: z.string().nullish(),
    quantization: z.unknown().optional(),
  })
  .passthrough();

/** Parses a config.json object. `source` names the file in error messages. */
export function configFromHf(json: unknown, source = 'config.json'): MobileLLMConfig {
  const parsed = HfConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${source}: invalid "${issue.path.join('.') || '(root)'}": ${issue.message}`);
  }
  const c = parsed.data;
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (c.model_type && !['mobilellm', 'llama'].includes(c.model_type)) fail(`unsupported model_type "${c.model_type}" (expected mobilellm or llama)`);
  const hiddenAct = HIDDEN_ACTS.find((a) => a === c.hidden_act) ?? fail(`unsupported hidden_act "${c.hidden_act}" (expected one of ${HIDDEN_ACTS.join(', ')})`);
  if (c.attention_bias) fail('attention_bias=true is not supported (MobileLLM has no attention biases)');
  if (c.mlp_bias) fail('mlp_bias=true is not supported (MobileLLM has no MLP biases)');
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) fail(`rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported`);
  const ropeType = c.rope_parameters?.rope_type ?? 'default';
  if (ropeType !== 'default') fail(`rope_parameters ${JSON.stringify(c.rope_parameters)} is not supported (only rope_type "default")`);
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0)
    fail(`num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) fail(`hidden_size (${c.hidden_size}) is not divisible by num_attention_heads (${c.num_attention_heads})`);
  if (headDim % 2 !== 0) fail(`head_dim (${headDim}) must be even for rotary embeddings`);
  const sharingOn = c.layer_sharing ?? false;
  const sharing: LayerSharing = sharingOn
    ? { strategy: c.layer_sharing_strategy ?? 'immediate', repeats: c.layer_sharing_repeats ?? 2 }
    : { strategy: 'none', repeats: 1 };
  if (sharing.strategy === 'none' && sharingOn) sharing.repeats = 1;
  const depth = c.num_hidden_layers * sharing.repeats;
  if (depth > CONFIG_LIMITS.effectiveDepth) {
    fail(
      `num_hidden_layers × layer_sharing_repeats (${c.num_hidden_layers} × ${sharing.repeats} = ${depth} layers) is over the limit of ${CONFIG_LIMITS.effectiveDepth}`,
    );
  }
  const eosIds = Array.isArray(c.eos_token_id) ? c.eos_token_id : c.eos_token_id == null ? [] : [c.eos_token_id];
  for (const [key, id] of [['bos_token_id', c.bos_token_id] as const, ...eosIds.map((id) => ['eos_token_id', id] as const)]) {
    if (id != null && id >= c.vocab_size) fail(`${key} (${id}) is not below vocab_size (${c.vocab_size})`);
  }
  const eos = eosIds[0];
  return {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    hiddenAct,
    numBlocks: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    maxPositions: c.max_position_embeddings,
    // MobileLLM configs say share_embedding: true with tie_word_embeddings: false; share_embedding is the truth.
    shareEmbedding: c.share_embedding ?? c.tie_word_embeddings ?? false,
    sharing,
    bosTokenId: c.bos_token_id ?? 1,
    eosTokenId: eos ?? 2,
    torchDtype: c.torch_dtype ?? c.dtype ?? 'float32',
  };
}

/** The Python module of our modeling file (resources/export/modeling_mobilellm.py), shipped beside a layer-shared config.json. */
export const REMOTE_CODE_MODULE = 'modeling_mobilellm';

/** The sizes and ids every dialect writes alike. */
function architectureKeys(c: MobileLLMConfig): Record<string, unknown> {
  return {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numBlocks,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxPositions,
    hidden_act: c.hiddenAct,
    attention_bias: false,
    mlp_bias: false,
    // transformers reads only this key for tying.
    tie_word_embeddings: c.shareEmbedding,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    torch_dtype: c.torchDtype,
  };
}

/** MobileLLM hub style keys (what Meta's configs and our reader call them). */
function mobileLLMKeys(c: MobileLLMConfig): Record<string, unknown> {
  return {
    architectures: ['MobileLLMForCausalLM'],
    model_type: 'mobilellm',
    ...architectureKeys(c),
    share_embedding: c.shareEmbedding,
    layer_sharing: c.sharing.strategy !== 'none',
    ...(c.sharing.strategy !== 'none' ? { layer_sharing_strategy: c.sharing.strategy, layer_sharing_repeats: c.sharing.repeats } : {}),
  };
}

/**
 * config.json of a float model folder: plain LLaMA when unshared; when
 * layer-shared, the compact form whose auto_map names our modeling file
 * (the folder must hold REMOTE_CODE_MODULE.py: engine/export/remote-code.ts).
 */
export function configToHf(c: MobileLLMConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  if (c.sharing.strategy === 'none') return { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...architectureKeys(c), ...extra };
  return {
    ...mobileLLMKeys(c),
    auto_map: {
      AutoConfig: `${REMOTE_CODE_MODULE}.MobileLLMConfig`,
      AutoModelForCausalLM: `${REMOTE_CODE_MODULE}.MobileLLMForCausalLM`,
    },
    ...extra,
  };
}

/**
 * config.json of a quantized model folder: `quantization` (engine/quant/spec.ts)
 * is ours; `quantization_config` is there for transformers to refuse the folder
 * (AutoConfig refuses the mobilellm type; LlamaForCausalLM a quantization_config
 * without quant_method) instead of loading random weights in place of our codes.
 */
export function quantizedConfigToHf(c: MobileLLMConfig, quantization: unknown): Record<string, unknown> {
  return {
    ...mobileLLMKeys(c),
    quantization,
    quantization_config: {
      quant_method: null,
      note: 'integer codes of MobileLLM Workbench, which transformers cannot read: `mlw export <folder> --format hf` writes the dequantized model',
    },
  };
}

export function layerSchedule(c: MobileLLMConfig): number[] {
  return sharingSchedule(c.numBlocks, c.sharing);
}

export function effectiveDepth(c: MobileLLMConfig): number {
  return layerSchedule(c).length;
}

export interface ParamCounts {
  total: number;
  embedding: number;
  nonEmbedding: number;
  perBlock: number;
  lmHead: number;
}

/** Unique parameters (a shared block or a tied head counts once). */
export function countParams(c: MobileLLMConfig): ParamCounts {
  const H = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  const attn = H * qOut + 2 * H * kvOut + qOut * H;
  const mlp = 3 * H * c.intermediateSize;
  const perBlock = attn + mlp + 2 * H;
  const embedding = c.vocabSize * H;
  const lmHead = c.shareEmbedding ? 0 : c.vocabSize * H;
  const total = embedding + c.numBlocks * perBlock + H + lmHead;
  return { total, embedding, nonEmbedding: total - embedding, perBlock, lmHead };
}
