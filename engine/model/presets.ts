// The official MobileLLM sizes (facebookresearch/MobileLLM configs and model
// card), all with the LLaMA 32k tokenizer and the input embedding shared with
// the output head. "-LS" variants run every block twice (immediate sharing):
// same storage, twice the effective depth.
import type { MobileLLMConfig } from './config';

interface Shape {
  hidden: number;
  intermediate: number;
  blocks: number;
  heads: number;
  kvHeads: number;
}

const SIZES: Record<string, Shape> = {
  '125M': { hidden: 576, intermediate: 1536, blocks: 30, heads: 9, kvHeads: 3 },
  '350M': { hidden: 960, intermediate: 2560, blocks: 32, heads: 15, kvHeads: 5 },
  '600M': { hidden: 1152, intermediate: 3072, blocks: 40, heads: 18, kvHeads: 6 },
  '1B': { hidden: 1280, intermediate: 3584, blocks: 54, heads: 20, kvHeads: 5 },
  '1.5B': { hidden: 1600, intermediate: 4352, blocks: 54, heads: 25, kvHeads: 5 },
};

function fromShape(s: Shape, layerShared: boolean): MobileLLMConfig {
  return {
    vocabSize: 32000,
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    hiddenAct: 'silu',
    numBlocks: s.blocks,
    numHeads: s.heads,
    numKvHeads: s.kvHeads,
    headDim: s.hidden / s.heads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositions: 2048,
    shareEmbedding: true,
    sharing: layerShared ? { strategy: 'immediate', repeats: 2 } : { strategy: 'none', repeats: 1 },
    bosTokenId: 1,
    eosTokenId: 2,
    torchDtype: 'float16',
  };
}

export const PRESET_NAMES = Object.keys(SIZES).flatMap((n) => [n, `${n}-LS`]);

/** A preset by name: "125M", "350M", …, or with "-LS" for the layer-shared variant. */
export function preset(name: string): MobileLLMConfig {
  const ls = name.endsWith('-LS');
  const shape = SIZES[ls ? name.slice(0, -3) : name];
  if (!shape) throw new Error(`unknown preset "${name}" (expected one of ${PRESET_NAMES.join(', ')})`);
  return fromShape(shape, ls);
}

/** A random-init "nano" shape for tests and benchmarks: deep and thin like the real ones. */
export function nanoConfig(overrides: Partial<MobileLLMConfig> = {}): MobileLLMConfig {
  return {
    ...fromShape({ hidden: 128, intermediate: 352, blocks: 8, heads: 4, kvHeads: 2 }, false),
    vocabSize: 32000,
    torchDtype: 'float32',
    ...overrides,
  };
}
