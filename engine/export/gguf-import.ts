// GGUF import: a llama-architecture .gguf file (F32, F16, Q8_0 or Q4_0
// tensors) becomes a float model folder — config.json, model.safetensors
// (float32), tokenizer.json, tokenizer_config.json — that engine/folder opens
// like any other. The inverse of gguf.ts: names mapped back, q/k rows
// un-permuted to the half-rotation layout, quantized blocks dequantized, and a
// file we wrote from a layer-shared model (mobilellm.layer_sharing.*) folded
// back to its physical blocks.
import path from 'node:path';
import { writeDirAtomic } from '../io/atomic';
import { writeTensorFiles } from '../io/checkpoint';
import { float32Raw, numel, type RawTensor } from '../io/raw-tensor';
import { configFromHf, layerSchedule, type MobileLLMConfig } from '../model/config';
import { tensorSpecs, type TensorSpec } from '../model/layout';
import { SHARING_STRATEGIES, type LayerSharing } from '../model/sharing';
import { ggufTensorName, ropePermute } from './gguf';
import { GgufFile } from './gguf-file';
import { decodeTensor } from './gguf-quant';
import { tokenizerFilesFromGguf } from './gguf-vocab';
import type { ExportResult } from './result';

/** The architecture of a llama GGUF file; `blockLayer[b]` is the effective layer whose tensors block b takes. */
function readArchitecture(g: GgufFile): { config: MobileLLMConfig; blockLayer: number[] } {
  const arch = g.scalar('general.architecture');
  if (arch !== 'llama') throw new Error(`${g.path}: general.architecture is ${JSON.stringify(arch)}; only llama models can be imported`);
  const num = (key: string, fallback?: number): number => {
    const v = g.scalar(key);
    if (v === undefined) {
      if (fallback === undefined) throw new Error(`${g.path}: metadata "${key}" is missing`);
      return fallback;
    }
    return Number(v);
  };
  const scaling = g.scalar('llama.rope.scaling.type');
  if (scaling !== undefined && scaling !== 'none') throw new Error(`${g.path}: llama.rope.scaling.type ${JSON.stringify(scaling)} is not supported`);
  const embd = g.tensors.get('token_embd.weight');
  if (!embd) throw new Error(`${g.path}: no tensor "token_embd.weight"`);
  const hidden = num('llama.embedding_length');
  const heads = num('llama.attention.head_count');
  const headDim = num('llama.attention.key_length', hidden / heads);
  if (num('llama.rope.dimension_count', headDim) !== headDim)
    throw new Error(`${g.path}: llama.rope.dimension_count differs from the head size ${headDim} (partial rotary is not supported)`);
  if (num('llama.attention.value_length', headDim) !== headDim) throw new Error(`${g.path}: llama.attention.value_length differs from key_length`);
  const depth = num('llama.block_count');
  const strategy = g.scalar('mobilellm.layer_sharing.strategy');
  let sharing: LayerSharing = { strategy: 'none', repeats: 1 };
  let numBlocks = depth;
  if (strategy !== undefined && strategy !== 'none') {
    if (!(SHARING_STRATEGIES as readonly unknown[]).includes(strategy))
      throw new Error(`${g.path}: mobilellm.layer_sharing.strategy ${JSON.stringify(strategy)} is unknown`);
    sharing = { strategy: strategy as LayerSharing['strategy'], repeats: num('mobilellm.layer_sharing.repeats') };
    numBlocks = num('mobilellm.block_count');
  }
  const json = {
    vocab_size: embd.ne[1],
    hidden_size: hidden,
    intermediate_size: num('llama.feed_forward_length'),
    num_hidden_layers: numBlocks,
    num_attention_heads: heads,
    num_key_value_heads: num('llama.attention.head_count_kv', heads),
    head_dim: headDim,
    rms_norm_eps: num('llama.attention.layer_norm_rms_epsilon', 1e-5),
    rope_theta: num('llama.rope.freq_base', 10000),
    max_position_embeddings: num('llama.context_length', 2048),
    share_embedding: !g.tensors.has('output.weight'),
    layer_sharing: sharing.strategy !== 'none',
    ...(sharing.strategy !== 'none' ? { layer_sharing_strategy: sharing.strategy, layer_sharing_repeats: sharing.repeats } : {}),
    bos_token_id: num('tokenizer.ggml.bos_token_id', 1),
    eos_token_id: num('tokenizer.ggml.eos_token_id', 2),
  };
  const config = configFromHf(json, `${g.path} (its llama.* metadata)`);
  const schedule = layerSchedule(config);
  if (schedule.length !== depth) throw new Error(`${g.path}: llama.block_count ${depth} does not match the layer sharing (${schedule.length} layers)`);
  const blockLayer = Array.from({ length: numBlocks }, (_, b) => schedule.indexOf(b));
  return { config, blockLayer };
}

/** Converts the GGUF file `file` into a float model folder at `outDir` (written atomically). */
export async function importGguf(file: string, outDir: string, onProgress?: (fraction: number, message: string) => void): Promise<ExportResult> {
  const g = GgufFile.open(file);
  try {
    const { config, blockLayer } = readArchitecture(g);
    const notes: string[] = [];
    const types = new Set([...g.tensors.values()].map((t) => t.type));
    if (types.has('Q8_0') || types.has('Q4_0')) notes.push(`quantized tensors (${[...types].join(', ')}) dequantized to float32`);
    if (config.sharing.strategy !== 'none')
      notes.push(`layer-shared (${config.sharing.strategy} ×${config.sharing.repeats}): ${config.numBlocks} blocks read from the first layer that runs each`);
    const specs = tensorSpecs(config);
    const source = (s: TensorSpec) => ggufTensorName(s, s.block === undefined ? undefined : blockLayer[s.block]);
    const expected = new Set(specs.map(source));
    // Layers a shared block repeats hold copies; anything else unknown is refused.
    const copies = new Set<string>();
    if (config.sharing.strategy !== 'none') {
      layerSchedule(config).forEach((b, l) => {
        for (const s of specs.filter((x) => x.block === b)) copies.add(ggufTensorName(s, l));
      });
    }
    for (const name of g.tensors.keys()) {
      if (!expected.has(name) && !copies.has(name)) throw new Error(`${g.path}: unexpected tensor "${name}" (not part of a llama model of this shape)`);
    }
    for (const s of specs) {
      const name = source(s);
      const t = g.tensors.get(name);
      if (!t) throw new Error(`${g.path}: missing tensor "${name}"`);
      const shape = [...t.ne].reverse();
      if (shape.length !== s.shape.length || shape.some((d, i) => d !== s.shape[i])) {
        throw new Error(`${g.path}: tensor "${name}" has shape [${shape}] (ne [${t.ne}]), expected [${s.shape}]`);
      }
    }
    const tokenizerFiles = tokenizerFilesFromGguf(g);
    const tensors = (function* () {
      for (const [i, s] of specs.entries()) {
        const name = source(s);
        onProgress?.(i / specs.length, `reading ${name}`);
        const t = g.tensors.get(name)!;
        let values = decodeTensor(g.read(name), t.type, numel(s.shape));
        if (s.kind === 'linear' && (s.key === 'q' || s.key === 'k')) {
          values = ropePermute(values, s.key === 'q' ? config.numHeads : config.numKvHeads, config.headDim, s.shape[1], false);
        }
        yield [s.name, float32Raw(values, s.shape)] as [string, RawTensor];
      }
    })();
    const files = ['config.json', 'model.safetensors', ...Object.keys(tokenizerFiles)];
    await writeDirAtomic(outDir, (tmp) => {
      writeTensorFiles(
        config,
        specs.map((s) => [s.name, s.shape]),
        tensors,
        tmp,
        'float32',
        { extraFiles: tokenizerFiles },
      );
    });
    onProgress?.(1, `wrote ${outDir}`);
    return { outDir: path.resolve(outDir), files, notes };
  } finally {
    g.close();
  }
}
