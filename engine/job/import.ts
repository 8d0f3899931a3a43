// mlw job import: a job folder's results (spec.ts) as a run in the store (a finetune or pretrain run) — its
// curves (metrics.jsonl), its checkpoints (copied, as a local run's are) and
// the machine it ran on (in the run's config, under `job`). Importing the same
// job again (its id) extends that run with the steps and checkpoints that are
// new; the run is completed once the job wrote done.json, paused before (so it
// can be imported again, or resumed here from its newest checkpoint).
import fs from 'node:fs';
import path from 'node:path';
import { readConfig } from '../io/checkpoint';
import { countParams } from '../model/config';
import type { Store } from '../store/store';
import type { MetricPoint, Run } from '../store/records';
import { readTrainerState } from '../train/checkpoints';
import { checkpointAsModel } from '../train/run';
import { FinetuneConfig } from '../train/config';
import {
  CHECKPOINTS_DIR,
  DONE_FILE,
  JOB_SPEC,
  JobMachine,
  JobMetricLine,
  JobSpec,
  MACHINE_FILE,
  type JobImportResult,
  METRICS_FILE,
  type JobMetricLine as MetricLine,
} from './spec';

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
}

export function readJobSpec(dir: string): JobSpec {
  const file = path.join(dir, JOB_SPEC);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${JOB_SPEC} (not a job folder made by mlw job export)`);
  const parsed = JobSpec.safeParse(readJson(file));
  if (!parsed.success) throw new Error(`${file}: invalid "${parsed.error.issues[0].path.join('.')}": ${parsed.error.issues[0].message}`);
  return parsed.data;
}

/** The job's metric lines, the last one of each step (a relaunch rewrites the steps after its checkpoint); a line cut by a kill is skipped. */
export function readJobMetrics(dir: string): MetricLine[] {
  const file = path.join(dir, METRICS_FILE);
  if (!fs.existsSync(file)) return [];
  const byStep = new Map<number, MetricLine>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      continue;
    }
    const parsed = JobMetricLine.safeParse(json);
    if (parsed.success) byStep.set(parsed.data.step, parsed.data);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

function readMachine(dir: string): JobMachine | null {
  const file = path.join(dir, MACHINE_FILE);
  if (!fs.existsSync(file)) return null;
  const parsed = JobMachine.safeParse(readJson(file));
  return parsed.success ? parsed.data : null;
}

/** The job's complete checkpoints by step (a folder is complete once renamed from .tmp with its trainer_state.json). */
function jobCheckpoints(dir: string): { step: number; dir: string }[] {
  const root = path.join(dir, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((name) => /^checkpoint-(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && fs.existsSync(path.join(root, m[0], 'trainer_state.json')))
    .map((m) => ({ step: Number(m[1]), dir: path.join(root, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

function points(m: MetricLine): MetricPoint[] {
  const wallTime = m.time !== undefined ? Math.round(m.time * 1000) : undefined;
  const out: MetricPoint[] = [
    { step: m.step, name: 'loss', value: m.loss, wallTime },
    { step: m.step, name: 'lr', value: m.lr, wallTime },
    { step: m.step, name: 'grad_norm', value: m.grad_norm, wallTime },
    { step: m.step, name: 'tokens_per_s', value: m.tokens_per_s, wallTime },
  ];
  if (m.val_loss !== undefined) {
    out.push({ step: m.step, name: 'val_loss', value: m.val_loss, wallTime }, { step: m.step, name: 'val_ppl', value: Math.exp(m.val_loss), wallTime });
  }
  if (typeof m.gpu_memory_gb === 'number') out.push({ step: m.step, name: 'gpu_memory_gb', value: m.gpu_memory_gb, wallTime });
  return out;
}

/** The run an earlier import of job `id` made, if any. */
function importedRun(store: Store, id: string): Run | null {
  return store.runs.list().find((r) => (r.config.job as { id?: string } | undefined)?.id === id) ?? null;
}

/** The base model's id in the store (recorded when it is not yet), or null when its folder is not on this machine. */
function baseModelId(store: Store, dir: string): number | null {
  const abs = path.resolve(dir);
  const known = store.models.list().find((m) => m.path === abs);
  if (known) return known.id;
  if (!fs.existsSync(path.join(abs, 'config.json'))) return null;
  return store.models.add({ name: path.basename(abs), source: 'imported', format: 'safetensors', path: abs, paramCount: countParams(readConfig(abs)).total })
    .id;
}

/** Records (or extends) the run of the job folder `dir`; `out` replaces the finished model's folder its configuration names (a lab variant's in this home). */
export async function importJob(store: Store, dir: string, o: { out?: string } = {}): Promise<JobImportResult> {
  const jobDir = path.resolve(dir);
  const spec = readJobSpec(jobDir);
  const machine = readMachine(jobDir);
  const metrics = readJobMetrics(jobDir);
  const done = fs.existsSync(path.join(jobDir, DONE_FILE));
  const jobInfo = { id: spec.id, dir: jobDir, machine, importedAt: Date.now() };
  let run = importedRun(store, spec.id);
  const created = run === null;
  if (!run) {
    // A fine-tuning job's base model is recorded as mlw finetune records it; a pre-training job starts from none.
    const modelId = spec.kind === 'finetune' ? baseModelId(store, FinetuneConfig.parse(spec.config).model) : null;
    run = store.runs.create({ kind: spec.kind, modelId, config: { ...spec.config, ...(o.out ? { out: o.out } : {}), job: jobInfo } });
    // A pre-training run's base (its tokenizer and initial weights) is where mlw pretrain --resume looks for it.
    if (spec.kind === 'pretrain') fs.cpSync(path.join(jobDir, 'model'), path.join(store.runs.dirFor(run.id), 'base'), { recursive: true });
  }
  if (run.status === 'completed') {
    return { runId: run.id, created, status: 'completed', lastStep: metrics.at(-1)?.step ?? 0, newSteps: 0, newCheckpoints: [], modelId: null, machine };
  }
  const before = store.metrics.latest(run.id).loss?.step ?? 0;
  const recorded = new Set(store.checkpoints.list(run.id).map((c) => c.step));
  store.runs.setStatus(run.id, 'running');
  try {
    store.metrics.append(run.id, metrics.filter((m) => m.step > before).flatMap(points));
    const kind = spec.method === 'full' ? 'full' : 'lora';
    const newCheckpoints: number[] = [];
    for (const c of jobCheckpoints(jobDir)) {
      if (recorded.has(c.step)) continue;
      readTrainerState(c.dir); // a checkpoint the job wrote whole
      const val = metrics.find((m) => m.step === c.step)?.val_loss;
      const files = fs.readdirSync(c.dir).filter((f) => f !== 'metrics.json');
      await store.checkpoints.writeAndRecord(
        run.id,
        c.step,
        kind,
        (tmp) => {
          for (const f of files) fs.copyFileSync(path.join(c.dir, f), path.join(tmp, f));
        },
        val !== undefined ? { val_loss: val } : {},
      );
      newCheckpoints.push(c.step);
    }
    const status = done ? 'completed' : 'paused';
    const latest = store.checkpoints.resumePoint(run.id);
    // A finished job's model is recorded as a local run's is: a copy of its last checkpoint.
    const modelId = done && latest ? (await checkpointAsModel(store, run, latest.path, kind, `-job-${run.id}`)).id : null;
    store.runs.setStatus(run.id, status);
    const lastStep = metrics.at(-1)?.step ?? 0;
    return { runId: run.id, created, status, lastStep, newSteps: Math.max(0, lastStep - before), newCheckpoints, modelId, machine };
  } catch (err) {
    store.runs.setStatus(run.id, 'paused');
    throw err;
  }
}
