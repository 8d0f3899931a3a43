// AdamW (Loshchilov & Hutter), step for step as torch.optim.AdamW:
//
//   p ← p · (1 − lr·λ)                               decoupled weight decay
//   m ← m + (1 − β1)(g − m)                          first moment (torch's lerp)
//   v ← β2·v + (1 − β2)·g²                           second moment
//   p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//
// The moments are named tensors ("<param>.exp_avg", "<param>.exp_avg_sq") so a
// checkpoint can hold them; gradient clipping by global norm is here too.
import * as tf from '@tensorflow/tfjs';
import type { ArrayTensor } from '../io/raw-tensor';
import { adamwStep, sumOfSquares } from './adamw-kernel';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * Hugging Face Trainer's grouping: weight decay on everything but biases and
 * normalization gains (MobileLLM's RMSNorm weights). Embeddings are decayed.
 */
export function decaysByDefault(name: string): boolean {
  return !/(norm\.weight|layernorm\.weight|\.bias)$/.test(name);
}

export class AdamW {
  /** Optimizer steps taken. */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(
    readonly params: Map<string, tf.Variable>,
    readonly options: AdamWOptions,
    readonly decays: (name: string) => boolean = decaysByDefault,
  ) {
    const zeros = (p: tf.Tensor) => tf.tidy(() => tf.variable(tf.zerosLike(p), false));
    for (const [name, p] of params) {
      this.m.set(name, zeros(p));
      this.v.set(name, zeros(p));
    }
  }

  /** One update of every parameter with `grads` (same names) at learning rate `lr`. */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.options;
    this.step++;
    const stepSize = lr / (1 - b1 ** this.step);
    const bc2Sqrt = Math.sqrt(1 - b2 ** this.step);
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for "${name}"`);
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      // Three scopes, so that at most a few parameter-sized temporaries live at once (the embedding is 74 MB at 125M).
      tf.tidy(() => m.assign(tf.add(m, tf.mul(tf.sub(g, m), 1 - b1))));
      tf.tidy(() => v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2))));
      tf.tidy(() => {
        const decayed = weightDecay && this.decays(name) ? tf.mul(p, 1 - lr * weightDecay) : p;
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize)));
      });
    }
  }

  /** The moments as named tensors (views of the live state: read, do not dispose). */
  state(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const name of this.params.keys()) {
      out.set(`${name}.exp_avg`, this.m.get(name)!);
      out.set(`${name}.exp_avg_sq`, this.v.get(name)!);
    }
    return out;
  }

  /** Restores moments saved by state() and the step count. */
  load(state: Map<string, tf.Tensor>, step: number): void {
    for (const [key, slots] of [
      ['exp_avg', this.m],
      ['exp_avg_sq', this.v],
    ] as const) {
      for (const [name, slot] of slots) {
        const t = state.get(`${name}.${key}`);
        if (!t) throw new Error(`optimizer state has no "${name}.${key}"`);
        if (t.shape.join() !== slot.shape.join()) throw new Error(`optimizer state "${name}.${key}" is [${t.shape}], expected [${slot.shape}]`);
        slot.assign(t);
      }
    }
    this.step = step;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/**
 * Scales the gradients in place so that their global L2 norm is at most
 * `maxNorm` (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
 */
export function clipGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const total = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const norm = total.dataSync()[0];
  total.dispose();
  const coef = clipScale(norm, maxNorm);
  if (coef < 1) {
    for (const [name, g] of grads) {
      grads.set(name, tf.mul(g, coef));
      g.dispose();
    }
  }
  return norm;
}

/**
 * The same AdamW on parameters held as Float32Arrays (the ONNX Runtime
 * trainer's: what the training graph is fed), updated in place; the moments
 * are Float32Arrays too. Float32 arithmetic as torch's CPU kernel does, four
 * lanes at a time (adamw-kernel.ts); the gradients are read scaled by
 * `gradScale` (clipping) and left as they are.
 */
export class ArrayAdamW {
  step = 0;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();

  constructor(
    readonly params: Map<string, ArrayTensor>,
    readonly options: AdamWOptions,
    readonly decays: (name: string) => boolean = decaysByDefault,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, new Float32Array(p.values.length));
      this.v.set(name, new Float32Array(p.values.length));
    }
  }

  apply(grads: Map<string, Float32Array>, lr: number, gradScale = 1): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.step++;
    const stepSize = lr / (1 - beta1 ** this.step);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    for (const [name, { values: p }] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for "${name}"`);
      const keep = weightDecay && this.decays(name) ? 1 - lr * weightDecay : 1;
      adamwStep(p, g, this.m.get(name)!, this.v.get(name)!, { gradScale, beta1, beta2, eps, keep, stepSize, bc2Sqrt });
    }
  }

  /** The moments under the names AdamW.state() uses (live views). */
  state(): Map<string, ArrayTensor> {
    const out = new Map<string, ArrayTensor>();
    for (const [name, p] of this.params) {
      out.set(`${name}.exp_avg`, { values: this.m.get(name)!, shape: p.shape });
      out.set(`${name}.exp_avg_sq`, { values: this.v.get(name)!, shape: p.shape });
    }
    return out;
  }

  load(state: Map<string, ArrayTensor>, step: number): void {
    for (const [name, p] of this.params) {
      for (const [key, slots] of [
        ['exp_avg', this.m],
        ['exp_avg_sq', this.v],
      ] as const) {
        const t = state.get(`${name}.${key}`);
        if (!t) throw new Error(`optimizer state has no "${name}.${key}"`);
        if (t.shape.join() !== p.shape.join()) throw new Error(`optimizer state "${name}.${key}" is [${t.shape}], expected [${p.shape}]`);
        slots.get(name)!.set(t.values);
      }
    }
    this.step = step;
  }
}

/** The factor clip_grad_norm_ scales gradients of global norm `norm` by (1 when they are within `maxNorm`). */
export function clipScale(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/** The global L2 norm of gradients held as Float32Arrays. */
export function globalNormArrays(grads: Map<string, Float32Array>): number {
  return Math.sqrt(sumOfSquares(grads.values()));
}
