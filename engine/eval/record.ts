// Which model an evaluation is about, and recording its report: linked to a
// model of the store, or to a checkpoint and its run, so that models and
// checkpoints can be compared on the Runs page.
import fs from 'node:fs';
import path from 'node:path';
import { readModelFolder } from '../folder/kind';
import type { Report } from '../store/records';
import type { Store } from '../store/store';
import { EvalReport } from './report';

export interface EvalTarget {
  /** The model folder to load. */
  dir: string;
  modelId: number | null;
  checkpointId: number | null;
  runId: number | null;
}

/**
 * `ref` as a user writes it: a folder (a recorded model or checkpoint, or any
 * model folder), a model id, or a model's name in the store.
 */
export function resolveEvalTarget(store: Store, ref: string): EvalTarget {
  if (fs.existsSync(ref) && fs.statSync(ref).isDirectory()) {
    const dir = path.resolve(ref);
    const checkpoint = store.checkpoints.list().find((c) => path.resolve(c.path) === dir);
    if (checkpoint) return { dir, modelId: null, checkpointId: checkpoint.id, runId: checkpoint.runId };
    const model = store.models.list().find((m) => path.resolve(m.path) === dir);
    return { dir, modelId: model?.id ?? null, checkpointId: null, runId: null };
  }
  const models = store.models.list();
  const found = /^\d+$/.test(ref) ? models.filter((m) => m.id === Number(ref)) : models.filter((m) => m.name === ref);
  if (found.length > 1) throw new Error(`"${ref}" names ${found.length} models (ids ${found.map((m) => m.id).join(', ')}): give the id`);
  if (!found.length) throw new Error(`"${ref}" is not a model folder, nor the id or name of a model in ${store.layout.root}`);
  return { dir: found[0].path, modelId: found[0].id, checkpointId: null, runId: null };
}

/**
 * Stores `report` as an `evaluation` report of `target`. A folder the store
 * does not know is recorded as an imported model first, so every report
 * belongs to something.
 */
export function recordEvaluation(store: Store, report: EvalReport, target: EvalTarget): Report {
  const body = EvalReport.parse(report);
  let { modelId } = target;
  if (modelId === null && target.checkpointId === null) {
    modelId = store.models.add({
      name: path.basename(target.dir),
      source: 'imported',
      format: report.model.format,
      path: target.dir,
      config: readModelFolder(target.dir).configJson ?? undefined, // an adapter has no config.json
    }).id;
  }
  return store.reports.add({ kind: 'evaluation', modelId, checkpointId: target.checkpointId, runId: target.runId, body });
}
