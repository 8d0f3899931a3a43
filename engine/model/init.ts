// Fresh weights for a config: GPT-2/LLaMA-style init, N(0, 0.02) for the
// embedding and projections, the residual outputs (o_proj, down_proj) scaled
// by 1/sqrt(2·layers) so the residual stream does not grow with depth, and
// RMSNorm gains at 1 (truncated at 2 standard deviations, as tf.truncatedNormal
// draws). Used for pre-training from scratch and for benchmarks; a job folder
// exported with --init seed draws the same in PyTorch (resources/job/train.py).
import * as tf from '@tensorflow/tfjs';
import { effectiveDepth, type MobileLLMConfig } from './config';
import { MobileLLM, weightsFromCheckpoint } from './model';
import { tensorSpecs, type Layout } from './layout';

/** The standard deviation of every drawn tensor but the residual outputs. */
export const INIT_STD = 0.02;

/** The residual outputs' (o_proj, down_proj) standard deviation: INIT_STD / sqrt(2 · layers run). */
export function residualInitStd(c: MobileLLMConfig): number {
  return INIT_STD / Math.sqrt(2 * effectiveDepth(c));
}

export function randomModel(c: MobileLLMConfig, seed = 0, wrap?: (t: tf.Tensor, name: string) => tf.Tensor, layout?: Layout): MobileLLM {
  const specs = new Map(tensorSpecs(c, layout).map((s) => [s.name, s]));
  const residualStd = residualInitStd(c);
  let n = 0;
  const get = (name: string) => {
    const s = specs.get(name)!;
    if (s.kind === 'norm') return tf.ones(s.shape);
    const std = s.kind === 'linear' && (s.key === 'o' || s.key === 'down') ? residualStd : INIT_STD;
    // tfjs draws unseeded for seed 0: every tensor's seed is at least 1, so seed 0 is as reproducible as any.
    return tf.truncatedNormal(s.shape, 0, std, 'float32', seed * 1000 + ++n);
  };
  return new MobileLLM(c, weightsFromCheckpoint(c, get, wrap, layout), layout);
}
