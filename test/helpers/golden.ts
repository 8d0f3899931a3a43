// Access to the golden vectors from Hugging Face transformers (copied from
// ../shared/golden into test/fixtures/golden).
import fs from 'node:fs';
import path from 'node:path';
import { SafetensorsFile } from '../../engine/io/safetensors';
import { toFloat32 } from '../../engine/io/raw-tensor';

export const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');
export const GOLDEN = path.join(FIXTURES, 'golden');

export const GOLDEN_CASES = [
  'tiny-gqa',
  'tiny-untied-mha',
  'tiny-ls-immediate',
  'tiny-ls-repeat-all',
  'tiny-ls-reverse',
  'tiny-realvocab',
  'tiny-gqa-fp16',
  'tiny-gqa-bf16',
  'tiny-gqa-bin',
] as const;
export type GoldenCase = (typeof GOLDEN_CASES)[number];

export interface GoldenExpected {
  loss: number;
  loss_after_adamw_step: number;
  param_count: number;
  param_count_embedding: number;
  param_count_non_embedding: number;
  effective_layer_order: number[];
  params: Record<string, number[]>;
  inputs: { input_ids: number[][]; shape: [number, number] };
  generation: { prompt_ids: number[]; new_ids: number[]; max_new_tokens: number };
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number; after_step_params_stored: boolean };
}

export function goldenDir(c: GoldenCase): string {
  return path.join(GOLDEN, c);
}

export function goldenExpected(c: GoldenCase): GoldenExpected {
  return JSON.parse(fs.readFileSync(path.join(goldenDir(c), 'expected.json'), 'utf8'));
}

export interface GoldenTensor {
  values: Float32Array;
  shape: number[];
}

export interface ReferenceTensors {
  /** A float tensor's values as float32. */
  get(name: string): GoldenTensor;
  /** input_ids (int64, as PyTorch writes them) as int32. */
  ids(): { values: Int32Array; shape: number[] };
  names(): string[];
}

/** Tensors of expected.safetensors. */
export function goldenTensors(c: GoldenCase): ReferenceTensors {
  return referenceTensors(path.join(goldenDir(c), 'expected.safetensors'));
}

/** Tensors of a reference .safetensors file written by PyTorch (a golden case's, or another fixture's). */
export function referenceTensors(file: string): ReferenceTensors {
  const st = SafetensorsFile.open(file);
  return {
    get(name) {
      const raw = st.read(name);
      return { values: toFloat32(raw, name), shape: raw.shape };
    },
    ids() {
      const raw = st.read('input_ids');
      if (raw.dtype !== 'I64') throw new Error(`input_ids: expected int64 (as PyTorch writes them), got ${raw.dtype}`);
      return { values: Int32Array.from(new BigInt64Array(raw.data.slice().buffer), Number), shape: raw.shape };
    },
    names: () => st.names(),
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
