// How long a sequence a model was trained on, where the workbench knows it.
// max_position_embeddings in a config is what the position encoding allows,
// not what the model learned: the bundled demo model says 2048 but was
// trained on 256-token sequences. Known from a pre-training run's sequence
// length or the bundled model's entry in resources/index.json, and inherited
// by what is made from a model (fine-tunes, quantized and merged copies).
// Meta's MobileLLM models were trained at 2k (their model cards), as their
// configs say.
import path from 'node:path';
import type { Store } from '../store/store';
import type { Model } from '../store/records';
import type { EvalTarget } from '../eval/record';
import { bundledResources, type ResourceIndex } from './resources';

/** Tokens per training sequence of `model`, or null when unknown. */
export function trainedContext(store: Store, model: Model, resources: ResourceIndex = bundledResources()): number | null {
  const bundled = resources.defaultModel;
  const seen = new Set<number>();
  for (let m: Model | null = model; m && !seen.has(m.id); m = m.parentModelId === null ? null : store.models.get(m.parentModelId)) {
    seen.add(m.id);
    if (bundled && path.resolve(m.path) === path.resolve(bundled.path)) return bundled.trainedContext ?? null;
    if (m.runId !== null) {
      const run = store.runs.get(m.runId);
      if (run.kind === 'pretrain' && typeof run.config.seqLen === 'number') return run.config.seqLen;
    }
  }
  return null;
}

/** Tokens per training sequence of what an evaluation scores (a model, a checkpoint, or a folder), or null when unknown. */
export function evalTargetContext(store: Store, target: EvalTarget, resources: ResourceIndex = bundledResources()): number | null {
  const bundled = resources.defaultModel;
  if (bundled && path.resolve(target.dir) === path.resolve(bundled.path)) return bundled.trainedContext ?? null;
  if (target.modelId !== null) return trainedContext(store, store.models.get(target.modelId), resources);
  if (target.runId !== null) {
    const run = store.runs.get(target.runId);
    if (run.kind === 'pretrain' && typeof run.config.seqLen === 'number') return run.config.seqLen;
    if (run.modelId !== null) return trainedContext(store, store.models.get(run.modelId), resources);
  }
  return null;
}
