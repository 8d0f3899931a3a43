// mlw lab import: a lab folder (export.ts) back from the GPU machine. Every
// finished job (done.json) becomes its variant's run (engine/job/import.ts),
// its `out` the variant's model folder in this home and its model written
// there as a local run's is (float16, from its last checkpoint); the
// experiment then runs training nothing: the imported runs are the variants'
// completed runs, measured and set in the table as by mlw lab run. Unfinished
// jobs are named, not imported (import again once they are done).
import fs from 'node:fs';
import path from 'node:path';
import type { Store } from '../store/store';
import type { JobContext } from '../jobs/job';
import { saveModel } from '../io/checkpoint';
import { readModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import { importJob, readJobMetrics } from '../job/import';
import { DONE_FILE } from '../job/spec';
import { readLabManifest, type LabJob } from './export';
import { runExperiment, variantOut, type LabResult, type LabRunOptions } from './run';

export interface LabJobImport extends LabJob {
  status: 'imported' | 'not finished' | 'not started';
  /** The last step the job reached. */
  step: number;
  runId: number | null;
}

export interface LabImportResult {
  dir: string;
  jobs: LabJobImport[];
  result: LabResult;
}

/** The model of a completed run's last checkpoint at `out`, as pretrain.ts writes a finished run's model (float16). */
async function writeVariantModel(store: Store, runId: number, out: string): Promise<void> {
  const last = store.checkpoints.resumePoint(runId);
  if (!last) throw new Error(`run ${runId}: completed without a checkpoint`);
  const { model } = loadModelFolder(readModelFolder(last.path));
  try {
    await saveModel(model, out, { dtype: 'float16', tokenizerFrom: last.path });
  } finally {
    model.dispose();
  }
}

/** Imports the finished jobs of lab folder `dir` and returns the experiment's table. The backend must be initialized. */
export async function importLab(store: Store, dir: string, o: Pick<LabRunOptions, 'evalText' | 'runtime'>, ctx: JobContext): Promise<LabImportResult> {
  const labDir = path.resolve(dir);
  const manifest = readLabManifest(labDir);
  const e = manifest.experiment;
  const jobs: LabJobImport[] = [];
  for (const j of manifest.jobs) {
    const jobDir = path.join(labDir, j.dir);
    const step = readJobMetrics(jobDir).at(-1)?.step ?? 0;
    if (!fs.existsSync(path.join(jobDir, DONE_FILE))) {
      jobs.push({ ...j, status: step > 0 ? 'not finished' : 'not started', step, runId: null });
      continue;
    }
    const out = variantOut(store.layout.root, e, manifest.scale, j.variant, j.seed);
    const r = await importJob(store, jobDir, { out });
    const run = store.runs.get(r.runId);
    if (run.config.out !== out) {
      throw new Error(
        `${jobDir}: imported before (mlw job import) as run ${run.id}, whose model is not this home's lab folder; delete it (mlw store runs delete ${run.id} --yes) and import again`,
      );
    }
    if (!fs.existsSync(out)) await writeVariantModel(store, run.id, out);
    jobs.push({ ...j, status: 'imported', step, runId: run.id });
  }
  const result = await runExperiment(store, e, { scale: manifest.scale, evalText: o.evalText, runtime: o.runtime, evaluateOnly: true }, ctx);
  return { dir: labDir, jobs, result };
}
