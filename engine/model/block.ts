// One decoder block (pre-norm LLaMA):
//   x = x + attention(rmsnorm(x))
//   x = x + mlp(rmsnorm(x))
import * as tf from '@tensorflow/tfjs';
import { attention, type AttentionContext, type AttentionShape, type AttentionWeights } from './attention';
import { mlp, type MlpWeights } from './mlp';
import { rmsNorm } from './rmsnorm';
import type { BlockNormKey } from './layout';
import type { HiddenAct } from './config';

export interface BlockWeights {
  /** RMSNorm gains [H]: `input` before attention, `post` before the MLP. */
  norms: Record<BlockNormKey, tf.Tensor1D>;
  attn: AttentionWeights;
  mlp: MlpWeights;
}

/** Residual updates of one block, for inspection. */
export interface BlockUpdates {
  attn: tf.Tensor2D;
  mlp: tf.Tensor2D;
}

/** x [B·T, H] → [B·T, H] */
export function block(
  w: BlockWeights,
  x: tf.Tensor2D,
  shape: AttentionShape,
  eps: number,
  act: HiddenAct,
  ctx: AttentionContext,
  onUpdates?: (layer: number, u: BlockUpdates) => void,
): tf.Tensor2D {
  return tf.tidy(() => {
    const a = attention(w.attn, rmsNorm(x, w.norms.input, eps), shape, ctx);
    const h = tf.add(x, a) as tf.Tensor2D;
    const m = mlp(w.mlp, rmsNorm(h, w.norms.post, eps), act);
    if (onUpdates) onUpdates(ctx.layer, { attn: tf.keep(a), mlp: tf.keep(m) });
    return tf.add(h, m) as tf.Tensor2D;
  });
}
