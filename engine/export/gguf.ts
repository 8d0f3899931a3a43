// GGUF export: a llama-architecture file that llama.cpp (and Ollama, LM Studio)
// loads as it is, with the tokenizer inside (gguf-vocab.ts).
//
//   model.embed_tokens                 → token_embd.weight      ne [H, V]
//   model.layers.{b}.input_layernorm   → blk.{l}.attn_norm      (f32 always, as llama.cpp's convert writes norms)
//   model.layers.{b}.self_attn.q/k/v/o → blk.{l}.attn_q/k/v/output   q and k rows permuted, below
//   model.layers.{b}.post_attention_…  → blk.{l}.ffn_norm
//   model.layers.{b}.mlp.gate/up/down  → blk.{l}.ffn_gate/up/down   (SwiGLU only: llama.cpp's llama has no other hidden_act)
//   model.norm                         → output_norm.weight
//   lm_head (untied only)              → output.weight          (tied: absent; llama.cpp then reuses token_embd)
//
// where l runs over the effective layers and b = schedule[l]: llama.cpp has no
// layer sharing, so a shared block is written once per layer that runs it
// (mobilellm.layer_sharing.* says how, for our import to fold them back).
//
// RoPE: we (and Hugging Face) rotate the two halves of each head, x[i] with
// x[i + d/2]; llama.cpp's llama architecture rotates adjacent pairs, x[2i]
// with x[2i+1]. The same attention scores come out when the rows of each
// head's q and k projections are reordered so that row i of the half layout
// becomes row 2i and row i + d/2 becomes row 2i + 1 (convert_hf_to_gguf.py's
// permute; ropePermute below, and its inverse for import).
import path from 'node:path';
import { KindedError } from '../errors';
import { readModelFolder } from '../folder/kind';
import { writeDirAtomic } from '../io/atomic';
import { layerSchedule, type MobileLLMConfig } from '../model/config';
import { tensorSpecs, type TensorSpec } from '../model/layout';
import { openFloatWeights } from './float-weights';
import { writeGguf, type GgufTensor, type GgufValue } from './gguf-file';
import { encodeTensor, GGML_TYPES, type GgmlType } from './gguf-quant';
import { ggufTokenizerMetadata } from './gguf-vocab';
import type { GGUF_TYPES } from './options';
import type { ExportResult } from './result';

export type GgufType = (typeof GGUF_TYPES)[number];

export interface GgufOptions {
  type: GgufType;
}

const TENSOR_TYPE: Record<GgufType, GgmlType> = { f32: 'F32', f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' };
/** general.file_type (llama.cpp's LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0). */
const FILE_TYPE: Record<GgufType, number> = { f32: 0, f16: 1, q8_0: 7, q4_0: 2 };

const BLOCK_NAMES: Record<string, string> = {
  input: 'attn_norm',
  post: 'ffn_norm',
  q: 'attn_q',
  k: 'attn_k',
  v: 'attn_v',
  o: 'attn_output',
  gate: 'ffn_gate',
  up: 'ffn_up',
  down: 'ffn_down',
};

/** The GGUF name of a tensor, in effective layer `layer` for block tensors. */
export function ggufTensorName(s: TensorSpec, layer?: number): string {
  if (s.kind === 'embedding') return 'token_embd.weight';
  if (s.kind === 'head') return 'output.weight';
  if (s.kind === 'norm' && s.key === 'final') return 'output_norm.weight';
  if (s.kind !== 'norm' && s.kind !== 'linear') throw new Error(`${s.name}: no GGUF name`);
  return `blk.${layer}.${BLOCK_NAMES[s.key]}.weight`;
}

/**
 * Reorders the rows of a q or k projection [heads·d, in] between the
 * half-rotation layout and llama.cpp's pair layout: in each head, half-layout
 * row j·d/2 + i (j = 0, 1) is pair-layout row 2i + j. `toPairs` false is the inverse.
 */
export function ropePermute(w: Float32Array, heads: number, headDim: number, cols: number, toPairs: boolean): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const halfRow = h * headDim + j * half + i;
        const pairRow = h * headDim + 2 * i + j;
        const [from, to] = toPairs ? [halfRow, pairRow] : [pairRow, halfRow];
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

/** The llama.* hyperparameters of a model of `c` unrolled to its effective depth, and our sharing keys. */
function architectureMetadata(c: MobileLLMConfig, name: string, type: GgufType): [string, GgufValue][] {
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const depth = layerSchedule(c).length;
  return [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: name }],
    ['general.file_type', u32(FILE_TYPE[type])],
    ...(type === 'q8_0' || type === 'q4_0' ? ([['general.quantization_version', u32(2)]] as [string, GgufValue][]) : []),
    ['llama.vocab_size', u32(c.vocabSize)],
    ['llama.context_length', u32(c.maxPositions)],
    ['llama.embedding_length', u32(c.hiddenSize)],
    ['llama.block_count', u32(depth)],
    ['llama.feed_forward_length', u32(c.intermediateSize)],
    ['llama.attention.head_count', u32(c.numHeads)],
    ['llama.attention.head_count_kv', u32(c.numKvHeads)],
    ['llama.attention.key_length', u32(c.headDim)],
    ['llama.attention.value_length', u32(c.headDim)],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: c.rmsNormEps }],
    ['llama.rope.dimension_count', u32(c.headDim)],
    ['llama.rope.freq_base', { type: 'f32', value: c.ropeTheta }],
    ['mobilellm.block_count', u32(c.numBlocks)],
    ['mobilellm.layer_sharing.strategy', { type: 'string', value: c.sharing.strategy }],
    ['mobilellm.layer_sharing.repeats', u32(c.sharing.repeats)],
  ];
}

/**
 * Writes `modelDir` (float, quantized or adapter folder) as `outDir`/model-<type>.gguf.
 * Quantized folders are dequantized, then written in `type`. A matrix whose
 * rows do not fill 32-value blocks is written in f16 when q8_0/q4_0 is asked.
 */
export async function exportGguf(
  modelDir: string,
  outDir: string,
  options: GgufOptions,
  onProgress?: (fraction: number, message: string) => void,
): Promise<ExportResult> {
  const folder = readModelFolder(modelDir);
  const c = folder.config;
  if (c.hiddenAct !== 'silu') {
    throw new KindedError(
      'bad_input',
      `${modelDir}: hidden_act "${c.hiddenAct}" cannot be written as GGUF (llama.cpp's llama architecture computes SiLU-gated MLPs only); export --format hf or onnx instead`,
    );
  }
  const notes: string[] = [];
  const schedule = layerSchedule(c);
  if (c.sharing.strategy !== 'none') {
    notes.push(
      `layer-shared (${c.sharing.strategy} ×${c.sharing.repeats}): ${c.numBlocks} blocks written as ${schedule.length} llama layers (llama.cpp has no layer sharing)`,
    );
  }
  if (folder.kind === 'quantized') notes.push(`quantized weights (${folder.quantization!.method}) dequantized, then written as ${options.type}`);
  if (folder.kind === 'adapter') notes.push('the adapter is merged into its base model');
  const tokenizer = ggufTokenizerMetadata(folder.tokenizerDir, c.vocabSize);
  notes.push(...tokenizer.notes);
  const metadata = new Map<string, GgufValue>([...architectureMetadata(c, path.basename(path.resolve(modelDir)), options.type), ...tokenizer.metadata]);

  const specs = tensorSpecs(c);
  const blockSpecs = (b: number) => specs.filter((s) => s.block === b);
  const ordered: { spec: TensorSpec; name: string }[] = [{ spec: specs.find((s) => s.kind === 'embedding')!, name: 'token_embd.weight' }];
  schedule.forEach((b, l) => {
    for (const s of blockSpecs(b)) ordered.push({ spec: s, name: ggufTensorName(s, l) });
  });
  for (const s of specs.filter((x) => x.block === undefined && x.kind !== 'embedding')) ordered.push({ spec: s, name: ggufTensorName(s) });

  const wanted = TENSOR_TYPE[options.type];
  const fallback = new Set<string>();
  const file = `model-${options.type}.gguf`;
  const weights = openFloatWeights(folder);
  try {
    const tensors: GgufTensor[] = ordered.map(({ spec, name }, i) => {
      const ne = [...spec.shape].reverse();
      let type: GgmlType = spec.shape.length === 1 ? 'F32' : wanted;
      if (ne[0] % GGML_TYPES[type].blockSize !== 0) {
        type = 'F16';
        fallback.add(name);
      }
      return {
        name,
        ne,
        type,
        data: () => {
          onProgress?.(i / ordered.length, `writing ${name}`);
          let values = weights.get(spec.module);
          if (spec.kind === 'linear' && (spec.key === 'q' || spec.key === 'k')) {
            values = ropePermute(values, spec.key === 'q' ? c.numHeads : c.numKvHeads, c.headDim, spec.shape[1], true);
          }
          return encodeTensor(values, type);
        },
      };
    });
    if (fallback.size)
      notes.push(
        `${fallback.size} matrices whose rows are not a multiple of 32 values written in f16: ${[...fallback].slice(0, 3).join(', ')}${fallback.size > 3 ? ', …' : ''}`,
      );
    await writeDirAtomic(outDir, (tmp) => {
      writeGguf(path.join(tmp, file), metadata, tensors);
    });
  } finally {
    weights.close();
  }
  onProgress?.(1, `wrote ${path.join(outDir, file)}`);
  return { outDir, files: [file], notes };
}
