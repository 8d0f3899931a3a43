// Loss and gradients of one micro-batch, in one of two ways:
//
//   tape       one autodiff tape over the whole model (tf.variableGrads). Fast,
//              but tfjs frees neither the saved activations nor the
//              intermediate gradients until the whole backward pass is done,
//              so memory grows with depth × batch × length.
//   recompute  gradient checkpointing per effective layer: a forward pass
//              without a tape keeps only each layer's input [B·T, H]; the
//              backward pass then re-runs one layer at a time under its own
//              tape, from the loss back to the embedding. One more forward
//              pass of compute, memory of a single layer.
//
// Both run the layers as MobileLLM.forward does (embedding → blocks in sharing
// order → final norm), but end in the fused head + cross-entropy of loss.ts
// instead of materializing the logits.
import * as tf from '@tensorflow/tfjs';
import { block, type BlockWeights } from '../model/block';
import { DenseLinear } from '../model/linear';
import { TokenEmbedding } from '../model/embedding';
import { blockLinear, type MobileLLM } from '../model/model';
import { LINEAR_KEYS } from '../model/layout';
import { rmsNorm } from '../model/rmsnorm';
import { headCrossEntropy, headLoss, type Targets } from './loss';
import { LoraLinear, type LoraDropout } from './lora';
import { mixSeed } from './rng';

export type GradMode = 'tape' | 'recompute';

/**
 * A trainable variable holding `t`'s values, `t` itself released: the `wrap`
 * for loadModel and applyLora. (A tf.variable shares its source's data; a
 * source left alive would pin the first copy of every weight for the whole run.)
 */
export function trainable<T extends tf.Tensor>(t: T): T {
  const v = tf.variable(t);
  t.dispose();
  return v as unknown as T;
}

export interface MicroBatch extends Targets {
  /** [B, T] int32 */
  ids: tf.Tensor2D;
}

/** Dropout for the adapters: the shared LoraDropout and this micro-batch's key (a mask per layer derives from it). */
export interface DropoutPlan {
  dropout: LoraDropout;
  key: number;
}

/** Every tensor a block computes with (dense weights, or a LoRA layer's A and B and its base). */
function blockTensors(b: BlockWeights): tf.Tensor[] {
  const out: tf.Tensor[] = Object.values(b.norms);
  for (const key of LINEAR_KEYS) {
    const lin = blockLinear(b, key);
    if (lin instanceof LoraLinear) {
      out.push(lin.a, lin.b);
      if (lin.base instanceof DenseLinear) out.push(lin.base.w);
    } else if (lin instanceof DenseLinear) {
      out.push(lin.w);
    }
  }
  return out;
}

function headOf(model: MobileLLM): TokenEmbedding {
  const head = model.weights.head;
  if (!(head instanceof TokenEmbedding)) throw new Error('training needs a dense float output head');
  return head;
}

/** Runs effective layer `layer` on x [B·T, H], with its dropout masks. */
function runLayer(model: MobileLLM, layer: number, x: tf.Tensor2D, T: number, rope: { cos: tf.Tensor2D; sin: tf.Tensor2D }, plan?: DropoutPlan): tf.Tensor2D {
  const c = model.config;
  if (plan) plan.dropout.key = mixSeed(plan.key, layer);
  const ctx = { B: x.shape[0] / T, T, rope: model.rope, cos: rope.cos, sin: rope.sin, layer };
  const shape = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
  const y = block(model.weights.blocks[model.schedule[layer]], x, shape, c.rmsNormEps, c.hiddenAct, ctx);
  if (plan) plan.dropout.key = null;
  return y;
}

/** Final norm, then the head's weighted cross-entropy. */
function lossFromHidden(model: MobileLLM, x: tf.Tensor2D, t: Targets, trainHead: boolean): tf.Scalar {
  return headCrossEntropy(rmsNorm(x, model.weights.norm, model.config.rmsNormEps), headOf(model).wT, t, trainHead);
}

/** Weighted loss Σ w·nll / denom of a batch, without gradients (validation). */
export function evalLoss(model: MobileLLM, batch: MicroBatch): number {
  const T = batch.ids.shape[1];
  const loss = tf.tidy(() => {
    const rope = model.rope.table(0, T);
    let x = model.weights.embed.lookup(batch.ids.reshape([-1]) as tf.Tensor1D);
    for (let l = 0; l < model.numLayers; l++) x = runLayer(model, l, x, T, rope);
    return headLoss(rmsNorm(x, model.weights.norm, model.config.rmsNormEps), headOf(model).wT, batch);
  });
  const value = loss.dataSync()[0];
  loss.dispose();
  return value;
}

export interface LossAndGrads {
  /** This micro-batch's share of the step's loss (Σ w·nll / denom). */
  loss: number;
  /** Gradient of `loss` for each trainable variable, by the name it was given under. */
  grads: Map<string, tf.Tensor>;
}

/**
 * Loss and gradients of one micro-batch for the variables in `trainable`
 * (name → variable). A variable used several times (a shared block, a tied
 * embedding) gets the sum of its uses' gradients.
 */
export function lossAndGrads(model: MobileLLM, trainable: Map<string, tf.Variable>, batch: MicroBatch, mode: GradMode, plan?: DropoutPlan): LossAndGrads {
  const head = headOf(model);
  const isTrainable = new Set<tf.Tensor>(trainable.values());
  const trainHead = isTrainable.has(head.wT);
  const nameOf = new Map<tf.Tensor, string>([...trainable].map(([n, v]) => [v, n]));
  const T = batch.ids.shape[1];
  if (mode === 'tape') {
    const vars = [...trainable.values()];
    const { value, grads } = tf.variableGrads(() => {
      const rope = model.rope.table(0, T);
      let x = model.weights.embed.lookup(batch.ids.reshape([-1]) as tf.Tensor1D);
      for (let l = 0; l < model.numLayers; l++) x = runLayer(model, l, x, T, rope, plan);
      return lossFromHidden(model, x, batch, trainHead);
    }, vars);
    const out = new Map<string, tf.Tensor>();
    for (const v of vars) out.set(nameOf.get(v)!, grads[v.name]);
    const loss = value.dataSync()[0];
    value.dispose();
    return { loss, grads: out };
  }

  const grads = new Map<string, tf.Tensor>();
  const accumulate = (tensors: tf.Tensor[], gs: tf.Tensor[]) => {
    tensors.forEach((t, i) => {
      const name = nameOf.get(t)!;
      const prev = grads.get(name);
      if (prev) {
        grads.set(name, tf.add(prev, gs[i]));
        tf.dispose([prev, gs[i]]);
      } else {
        grads.set(name, gs[i]);
      }
    });
  };
  const engine = tf.engine();
  const rope = model.rope.table(0, T);
  const ids = batch.ids.reshape([-1]) as tf.Tensor1D;
  // Forward without a tape, keeping each layer's input.
  const inputs: tf.Tensor2D[] = [tf.tidy(() => model.weights.embed.lookup(ids))];
  for (let l = 0; l < model.numLayers; l++) inputs.push(runLayer(model, l, inputs[l], T, rope, plan));
  // Loss → last layer's output.
  const outer = [model.weights.norm, head.wT].filter((t) => isTrainable.has(t));
  const last = inputs[model.numLayers];
  const top = engine.gradients(() => lossFromHidden(model, last, batch, trainHead), [last, ...outer]);
  const loss = top.value.dataSync()[0];
  top.value.dispose();
  let dx = top.grads[0] as tf.Tensor2D;
  accumulate(outer, top.grads.slice(1));
  // Back through the layers, one tape each.
  for (let l = model.numLayers - 1; l >= 0; l--) {
    const x = inputs[l];
    const params = blockTensors(model.weights.blocks[model.schedule[l]]).filter((t) => isTrainable.has(t));
    const r = engine.gradients(() => runLayer(model, l, x, T, rope, plan), [x, ...params], dx);
    r.value.dispose();
    tf.dispose([dx, inputs[l + 1]]);
    dx = r.grads[0] as tf.Tensor2D;
    accumulate(params, r.grads.slice(1));
  }
  // Embedding lookup.
  const embed = model.weights.embed.wT;
  if (isTrainable.has(embed)) {
    const r = engine.gradients(() => model.weights.embed.lookup(ids), [embed], dx);
    r.value.dispose();
    accumulate([embed], r.grads);
  }
  tf.dispose([dx, ids, inputs[0], rope.cos, rope.sin]);
  return { loss, grads };
}
