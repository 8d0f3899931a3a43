// A fine-tuning run in the store: the base model and the dataset (with its
// sha256) are recorded, the run's whole configuration is its `config`, every
// step's numbers go to run_metrics and every checkpoint to checkpoints, the
// last K and the best (lowest validation loss) kept. A paused run, or one whose
// process died (the store marks it interrupted), continues from its newest
// checkpoint with resumeFinetune — or from the start if it never wrote one.
import fs from 'node:fs';
import path from 'node:path';
import { backendInfo } from '../backend/select';
import type { JobContext } from '../jobs/job';
import { readConfig } from '../io/checkpoint';
import { countParams } from '../model/config';
import { loadTokenizer } from '../tokenizer/tokenizer';
import type { Store } from '../store/store';
import { requireResumable, type Dataset, type Model, type Run } from '../store/records';
import { loadChatTemplate } from '../chat/template';
import { formatIssues, packExamples, parseDataset, splitIndices, tokenizeRows, type ExampleSummary, type ParsedDataset } from './datasets';
import type { TokenizedExample } from './batching';
import { matmulRate, planTraining, type TrainingEstimate } from './estimate';
import { readTrainerState, OPTIMIZER_STATE, TRAINER_STATE, type TrainerState } from './checkpoints';
import { train, type MetricPoint, type RunLog, type StepRuntime } from './trainer';
import { openSteps, resolveTrainRuntime } from './open-steps';
import { RUNTIME_LABELS } from '../runtime/runtime';
import { FinetuneConfig, recordedRuntime, type FinetuneInput, type FinetuneOutcome } from './config';

export interface PreparedData {
  train: TokenizedExample[];
  val: TokenizedExample[];
  trainSet: ParsedDataset;
  valSet: ParsedDataset | null;
  summary: { train: ExampleSummary; val: ExampleSummary | null };
}

function checked(d: ParsedDataset): ParsedDataset {
  if (!d.issues.length) return d;
  const more = d.issues.length > 1 ? ` (and ${d.issues.length - 1} more problem${d.issues.length > 2 ? 's' : ''})` : '';
  throw new Error(`${formatIssues(d, 1)[0]}${more}`);
}

/** Reads, validates, renders and tokenizes the training (and validation) data. */
export function prepareData(cfg: FinetuneConfig): PreparedData {
  const tok = loadTokenizer(cfg.model);
  const template = loadChatTemplate(cfg.model, tok.bosId >= 0 ? tok.idToPiece(tok.bosId) : '', tok.eosId >= 0 ? tok.idToPiece(tok.eosId) : '');
  const render = { template, lossOn: cfg.lossOn, maxSeqLen: cfg.maxSeqLen };
  const trainSet = checked(parseDataset(cfg.data));
  const valSet = cfg.val ? checked(parseDataset(cfg.val)) : null;
  let trainRows = trainSet.rows;
  let valRows = valSet?.rows ?? [];
  if (!valSet) {
    const split = splitIndices(trainSet.rows.length, cfg.valFraction, cfg.train.seed);
    trainRows = split.train.map((i) => trainSet.rows[i]);
    valRows = split.val.map((i) => trainSet.rows[i]);
  }
  const t = tokenizeRows(trainRows, tok, render);
  const v = valRows.length ? tokenizeRows(valRows, tok, render) : null;
  if (!t.examples.length) throw new Error(`${cfg.data}: no example has answer tokens within --max-seq-len ${cfg.maxSeqLen}`);
  return {
    train: cfg.packing ? packExamples(t.examples, cfg.maxSeqLen, cfg.train.seed) : t.examples,
    val: v?.examples ?? [],
    trainSet,
    valSet,
    summary: { train: t.summary, val: v?.summary ?? null },
  };
}

/**
 * Memory and time of a step for this configuration and data (batches are as
 * long as their longest row) on the current backend; throws when it cannot fit.
 * On ONNX Runtime (the config's runtime unless it is tfjs) the limit is free
 * memory, not the wasm heap; the model of memory and time is still tfjs's.
 */
export function estimateRun(cfg: FinetuneConfig, data: PreparedData): TrainingEstimate {
  const config = readConfig(cfg.model);
  const seqLen = Math.max(...data.train.map((e) => e.ids.length));
  const shape = {
    method: cfg.method,
    loraRank: cfg.lora.rank,
    loraTargets: cfg.lora.targets,
    batchSize: cfg.train.batchSize,
    gradAccum: cfg.train.gradAccum,
    seqLen,
  };
  const backend = cfg.runtime === 'tfjs' ? backendInfo().name : 'onnxruntime';
  return planTraining(config, shape, backend, matmulRate(), cfg.gradMode === 'auto' ? undefined : cfg.gradMode);
}

/** Metrics and checkpoints of run `runId` in the store, keeping the last `keepLast` checkpoints and the best. */
export class StoreRunLog implements RunLog {
  constructor(
    private readonly store: Store,
    private readonly runId: number,
    private readonly kind: 'full' | 'lora',
    private readonly keepLast: number,
  ) {}

  metrics(points: MetricPoint[]): void {
    this.store.metrics.append(this.runId, points);
  }

  async checkpoint(step: number, write: (dir: string) => void, metrics: Record<string, number>): Promise<void> {
    await this.store.checkpoints.writeAndRecord(this.runId, step, this.kind, write, metrics);
    const all = this.store.checkpoints.list(this.runId);
    const withVal = all.filter((c) => typeof c.metrics.val_loss === 'number');
    const best = withVal.length ? withVal.reduce((a, b) => (b.metrics.val_loss! < a.metrics.val_loss! ? b : a)) : null;
    const keep = new Set(all.slice(-this.keepLast).map((c) => c.id));
    if (best) keep.add(best.id);
    for (const c of all) if (!keep.has(c.id)) this.store.checkpoints.remove(c.id);
  }
}

function recordModel(store: Store, dir: string): number {
  const abs = path.resolve(dir);
  const known = store.models.list().find((m) => m.path === abs);
  if (known) return known.id;
  const config = readConfig(abs);
  return store.models.add({ name: path.basename(abs), source: 'imported', format: 'safetensors', path: abs, paramCount: countParams(config).total }).id;
}

function recordDataset(store: Store, cfg: FinetuneConfig, data: PreparedData): Dataset {
  const split = data.valSet ? { path: path.resolve(data.valSet.file), rows: data.valSet.rows.length } : { fraction: cfg.valFraction, seed: cfg.train.seed };
  const same = store.datasets
    .findBySha256(data.trainSet.sha256)
    .find((d) => JSON.stringify(d.validationSplit) === JSON.stringify(split) && d.path === path.resolve(cfg.data));
  if (same) return same;
  return store.datasets.add({
    name: path.basename(cfg.data),
    path: path.resolve(cfg.data),
    format: data.trainSet.format,
    sha256: data.trainSet.sha256,
    rowCount: data.trainSet.rows.length,
    tokenCount: data.summary.train.tokens,
    validationSplit: split,
  });
}

/** Creates a run for `input` and trains it. The backend must be initialized. */
export async function startFinetune(store: Store, input: FinetuneInput, ctx: JobContext): Promise<FinetuneOutcome> {
  const cfg = FinetuneConfig.parse(input);
  cfg.model = path.resolve(cfg.model);
  cfg.data = path.resolve(cfg.data);
  if (cfg.val) cfg.val = path.resolve(cfg.val);
  const data = prepareData(cfg);
  const { runtime, skipped } = await resolveTrainRuntime(cfg.runtime, cfg.model);
  if (skipped) ctx.progress({ phase: 'starting', message: `training on TensorFlow.js: ${skipped}` });
  cfg.runtime = runtime;
  const estimate = estimateRun(cfg, data);
  const modelId = recordModel(store, cfg.model);
  const dataset = recordDataset(store, cfg, data);
  const run = store.runs.create({ kind: 'finetune', modelId, datasetId: dataset.id, config: cfg as unknown as Record<string, unknown> });
  return execute(store, run, cfg, data, estimate, ctx);
}

/** Continues a paused or interrupted run from its newest checkpoint. */
export async function resumeFinetune(store: Store, runId: number, ctx: JobContext): Promise<FinetuneOutcome> {
  const run = store.runs.get(runId);
  if (run.kind !== 'finetune') throw new Error(`run ${runId} is a ${run.kind} run, not a fine-tuning run`);
  requireResumable(run);
  const parsed = FinetuneConfig.safeParse(run.config);
  if (!parsed.success)
    throw new Error(`run ${runId}: its stored configuration is invalid (${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message})`);
  const cfg = parsed.data;
  const data = prepareData(cfg);
  if (run.datasetId !== null) {
    const recorded = store.datasets.get(run.datasetId);
    if (recorded.sha256 !== data.trainSet.sha256)
      throw new Error(`${cfg.data}: the dataset changed since run ${runId} started (sha256 differs); start a new run`);
  }
  return execute(store, run, cfg, data, estimateRun(cfg, data), ctx);
}

/** Error codes of a full disk (or quota): space can be freed and the run continued. */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

function isDiskFull(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (DISK_FULL_CODES.has(String((e as NodeJS.ErrnoException).code))) return true;
  }
  return false;
}

/**
 * Records why a run stopped on an error: a full disk interrupts it (its
 * earlier checkpoints are intact, it resumes once space is freed), anything
 * else fails it.
 */
export function stopOnError(store: Store, runId: number, err: unknown): void {
  const message = (err instanceof Error ? err.message : String(err)).split('\n')[0] || 'failed';
  if (isDiskFull(err)) store.runs.setStatus(runId, 'interrupted', { error: `disk full: ${message} — free some space and resume run ${runId}` });
  else store.runs.setStatus(runId, 'failed', { error: message });
}

async function execute(store: Store, run: Run, cfg: FinetuneConfig, data: PreparedData, estimate: TrainingEstimate, ctx: JobContext): Promise<FinetuneOutcome> {
  const fail = (err: unknown) => stopOnError(store, run.id, err);
  // The job shows its run from here on (the wizard follows this run, not the newest one).
  ctx.progress({ phase: 'starting', runId: run.id });
  const from = store.checkpoints.resumePoint(run.id);
  const runtime = recordedRuntime(run.config);
  let steps: StepRuntime;
  let resume: TrainerState | undefined;
  try {
    resume = from ? readTrainerState(from.path) : undefined;
    steps = await openSteps({
      runtime,
      baseModelDir: cfg.model,
      lora: cfg.method === 'lora' ? cfg.lora : null,
      from: from && resume ? { dir: from.path, step: resume.step } : null,
      seed: cfg.train.seed,
      adamw: cfg.train.adamw,
      gradMode: estimate.memory.mode,
    });
  } catch (err) {
    fail(err);
    throw err;
  }
  store.runs.setStatus(run.id, 'running');
  ctx.progress({
    phase: resume ? `resuming at step ${resume.step}` : 'starting',
    metrics: { est_memory_gb: estimate.memory.total / 1024 ** 3, est_step_s: estimate.stepSeconds, trainable_params: estimate.memory.trainableParams },
    message: `${RUNTIME_LABELS[runtime]} · ${steps.runtime === 'onnx' ? `one training graph (${steps.mode})` : `${steps.mode} backprop`}, ${data.train.length} training and ${data.val.length} validation examples`,
  });
  const kind = cfg.method === 'full' ? 'full' : 'lora';
  try {
    const result = await train(
      {
        steps,
        train: data.train,
        val: data.val,
        padId: 0,
        options: cfg.train,
        log: new StoreRunLog(store, run.id, kind, cfg.train.keepLast),
        resume,
      },
      ctx,
    );
    const latest = store.checkpoints.resumePoint(run.id);
    const modelId = result.status === 'completed' && latest ? (await checkpointAsModel(store, run, latest.path, kind, `-finetune-${run.id}`)).id : null;
    store.runs.setStatus(run.id, result.status);
    return { runId: run.id, status: result.status, step: result.state.step, checkpoint: latest?.path ?? null, modelId };
  } catch (err) {
    fail(err);
    throw err;
  } finally {
    await steps.dispose();
  }
}

/**
 * Records a checkpoint's weights as a model of its own (a copy without the
 * optimizer state, so it outlives checkpoint clean-up): a model folder (full)
 * or a PEFT adapter of the base model (LoRA), named after the base model.
 */
export async function checkpointAsModel(store: Store, run: Run, checkpointDir: string, kind: 'full' | 'lora', suffix: string): Promise<Model> {
  const files = fs.readdirSync(checkpointDir).filter((f) => f !== OPTIMIZER_STATE && f !== TRAINER_STATE);
  const base = run.modelId !== null ? store.models.get(run.modelId) : null;
  return store.models.writeAndAdd(
    {
      name: `${base?.name ?? 'model'}${suffix}`,
      source: 'derived',
      format: kind === 'full' ? 'safetensors' : 'peft-lora',
      parentModelId: run.modelId,
      runId: run.id,
      paramCount: base?.paramCount ?? null,
    },
    (tmp) => {
      for (const f of files) fs.copyFileSync(path.join(checkpointDir, f), path.join(tmp, f));
    },
  );
}
