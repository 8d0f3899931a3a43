// The one protocol between the engine and every UI (web mode over a
// WebSocket, Electron over IPC): requests with their params and results, the
// jobs they start with the result of each kind, and events — all zod schemas.
// The engine validates params at run time; a handler's types derive from its
// method's schemas, so the service cannot register one that disagrees; the
// tests check results against theirs.
//
// This module is imported by the renderer: it may import zod, types, and the
// engine's Node-free schema modules (each imports only zod and its kind).
import { z } from 'zod';
import { JobExportResult, JobImportResult } from '../job/spec';
import { Chat, Checkpoint, Message, MetricCurve, Model, Report, REPORT_KINDS, RESUMABLE_STATUSES, Run, RUN_NAME_MAX } from '../store/records';
import { InspectReport, StrategyCosts, ConversionReport, BLOCK_PICKS } from '../inspect/schema';
import { QuantReport } from '../quant/report';
import { GROUP_SIZES, QUANT_METHODS } from '../quant/spec';
import { SHARED_STRATEGIES, SHARING_STRATEGIES } from '../model/sharing';
import { LINEAR_KEYS } from '../model/layout';
import { DECAYS } from '../train/schedule';
import { FinetuneConfig, FinetuneOutcome, recordedRuntime } from '../train/config';
import { JobProgress } from '../jobs/job';
import { ExportOptions, ExportOutcome } from '../export/options';
import { LabExperimentSummary, LabPlot, LabResult, LabScale, LabTable } from '../lab/result';
export type { LabExperimentSummary, LabPlot, LabResultData, LabTable } from '../lab/result';
export type { ExportFormat } from '../export/options';
import { RUNTIME_LABELS, RUNTIME_NAMES, type RuntimeName } from '../runtime/runtime';

export type { Chat, Checkpoint, Message, MetricCurve, Model, Report, Run, InspectReport, StrategyCosts, QuantReport };
export type { EvalReport } from '../eval/report';

// ---- shared shapes -------------------------------------------------------

export const Sampling = z.object({
  temperature: z.number().min(0).max(5),
  topK: z.number().int().min(0).max(1000),
  topP: z.number().min(0).max(1),
  maxNewTokens: z.number().int().min(1).max(4096),
  repetitionPenalty: z.number().min(0.5).max(3),
  /** null: a new random seed for every answer. */
  seed: z.number().int().nullable(),
});
export type Sampling = z.infer<typeof Sampling>;

/** Defaults a chat starts with: lively but not wild, a little against repetition (small models loop). */
export const DEFAULT_CHAT_SAMPLING: Sampling = {
  temperature: 0.7,
  topK: 40,
  topP: 0.95,
  maxNewTokens: 256,
  repetitionPenalty: 1.1,
  seed: null,
};

const id = z.number().int().positive();
const count = z.number().int().min(0);

/** Choices the UI offers, from the engine's one definition of each (`.options` lists them). */
export const SharingStrategy = z.enum(SHARING_STRATEGIES);
export const LoraTarget = z.enum(LINEAR_KEYS);
export const QuantMethod = z.enum(QUANT_METHODS);
export const Decay = z.enum(DECAYS);
/** The run statuses a run resumes from. */
export const ResumableStatus = z.enum(RESUMABLE_STATUSES);
export type SharingStrategy = z.infer<typeof SharingStrategy>;
export type QuantMethod = z.infer<typeof QuantMethod>;

export const EngineStatus = z.object({
  version: z.string(),
  backend: z.string(),
  threads: count,
  /** Resident memory of the engine process, bytes. */
  rssBytes: count,
  /** Memory held by TensorFlow.js tensors, bytes. */
  tensorBytes: count,
  /** The chat model in memory and the runtime it runs on (e.g. "onnx (onnxruntime-node 1.30.0, cpu, 2 threads, contrib ops)"). */
  loadedModel: z.object({ modelId: id, name: z.string(), runtime: z.string() }).nullable(),
  home: z.string(),
});
export type EngineStatus = z.infer<typeof EngineStatus>;

export const ModelDetails = z.object({
  model: Model,
  /** Parsed architecture (camelCase MobileLLMConfig) or null when the folder no longer loads. */
  config: z.record(z.string(), z.unknown()).nullable(),
  params: z.object({ total: count, embedding: count, nonEmbedding: count, perBlock: count }).nullable(),
  effectiveDepth: count.nullable(),
  schedule: z.array(count).nullable(),
  /** Tokens per sequence it was trained on, where known (the config's max_position_embeddings may say more); null when unknown. */
  trainedContext: count.nullable(),
  bytesOnDisk: count,
  hasTokenizer: z.boolean(),
  chatTemplate: z.string().nullable(),
  /** Why it does not load, if it does not. */
  problem: z.string().nullable(),
});
export type ModelDetails = z.infer<typeof ModelDetails>;

export const ChatView = z.object({
  chat: Chat,
  /** Every message of the chat (a tree through parentId). */
  messages: z.array(Message),
  /** The branch currently shown, root → leaf. */
  thread: z.array(id),
  /** Name of the template used to build prompts, and its text. */
  template: z.object({ name: z.string(), source: z.string() }),
});
export type ChatView = z.infer<typeof ChatView>;

/** An answer being generated: its job, and the new messages (the question, for send and edit; the empty answer) to show at once. */
export const AnswerStarted = z.object({
  jobId: z.string(),
  userMessageId: id.optional(),
  assistantMessageId: id,
  messages: z.array(Message),
});
export type AnswerStarted = z.infer<typeof AnswerStarted>;

// ---- fine-tuning --------------------------------------------------------------

/** A fine-tuning run as the wizard sets it up: the engine's configuration, with a model id for the folder. */
export const FinetuneRequest = FinetuneConfig.omit({ model: true }).extend({ modelId: id });
export type FinetuneRequest = z.infer<typeof FinetuneRequest>;

export const FINETUNE_PRESET_NAMES = ['quick', 'balanced', 'thorough'] as const;
export type FinetunePreset = (typeof FINETUNE_PRESET_NAMES)[number];

/** Presets of the wizard's step 3: what each sets; everything else keeps the configuration's defaults. */
export const FINETUNE_PRESETS: Record<FinetunePreset, Pick<z.input<typeof FinetuneRequest>, 'method' | 'lora' | 'maxSeqLen' | 'train'>> = {
  // Every linear adapted at a high rate for two epochs: on the bundled model and sample dataset this is
  // what it takes for the answers to change visibly (q,v alone at 1e-3 barely moves a 9M model).
  quick: {
    method: 'lora',
    lora: { rank: 16, alpha: 32, dropout: 0, targets: LoraTarget.options },
    maxSeqLen: 256,
    train: { epochs: 2, lr: 2e-3, batchSize: 4, gradAccum: 1, warmupSteps: 5 },
  },
  balanced: {
    method: 'lora',
    lora: { rank: 16, alpha: 32, dropout: 0.05, targets: ['q', 'k', 'v', 'o'] },
    maxSeqLen: 512,
    train: { epochs: 2, lr: 5e-4, batchSize: 4, gradAccum: 2, warmupSteps: 10 },
  },
  thorough: {
    method: 'lora',
    lora: { rank: 32, alpha: 64, dropout: 0.05, targets: LoraTarget.options },
    maxSeqLen: 512,
    train: { epochs: 3, lr: 3e-4, batchSize: 4, gradAccum: 4, warmupSteps: 20 },
  },
};

/** What computes a training run's steps, as the wizard offers it ('auto': the fastest that loads). */
export const TrainRuntime = FinetuneConfig.shape.runtime.unwrap();

export { RUNTIME_LABELS };

const TRAINING_KINDS: readonly Run['kind'][] = ['finetune', 'pretrain'];

/** What trained a run: one of our runtimes, or PyTorch for a job run elsewhere and imported (mlw job import). */
export type TrainedRuntime = RuntimeName | 'pytorch';
export const TRAINED_LABELS: Record<TrainedRuntime, string> = { ...RUNTIME_LABELS, pytorch: 'PyTorch (job)' };

/** The runtime that trained a fine-tuning or pre-training run, as its config records it (null for other kinds). */
export function trainedRuntime(run: Pick<Run, 'kind' | 'config'>): TrainedRuntime | null {
  if (!TRAINING_KINDS.includes(run.kind)) return null;
  return run.config.job ? 'pytorch' : recordedRuntime(run.config);
}

/** The runtime a training job's progress message names at its start, if it names one. */
export function runtimeInMessage(message: string | undefined): RuntimeName | null {
  return RUNTIME_NAMES.find((name) => message?.startsWith(RUNTIME_LABELS[name])) ?? null;
}

/** The wizard's request for a preset: the configuration's defaults, then what the preset sets. */
export function presetRequest(preset: FinetunePreset, modelId: number, data: string): FinetuneRequest {
  return FinetuneRequest.parse({ modelId, data, ...FINETUNE_PRESETS[preset] });
}

export const DatasetInspection = z.object({
  file: z.string(),
  sha256: z.string(),
  format: z.string(),
  rows: count,
  /** "line N: problem" (at most 50). */
  issues: z.array(z.object({ line: count, message: z.string() })),
  issueCount: count,
  summary: z
    .object({
      rows: count,
      tokens: count,
      learnedTokens: count,
      longest: z.object({ line: count, tokens: count }).nullable(),
      truncated: count,
      skipped: count,
    })
    .nullable(),
  /** The first examples as rendered for training: text pieces, and whether the loss covers them. */
  preview: z.array(z.object({ line: count, segments: z.array(z.object({ text: z.string(), learn: z.boolean() })) })),
});
export type DatasetInspection = z.infer<typeof DatasetInspection>;

export const FinetuneEstimate = z.object({
  ok: z.boolean(),
  /** Why it cannot run, when !ok. */
  reason: z.string().nullable(),
  memoryBytes: z.object({ weights: count, gradients: count, optimizer: count, activations: count, total: count }).nullable(),
  limitBytes: count.nullable(),
  limitReason: z.string().nullable(),
  stepSeconds: z.number().min(0).nullable(),
  totalSteps: count.nullable(),
  trainableParams: count.nullable(),
});
export type FinetuneEstimate = z.infer<typeof FinetuneEstimate>;

export const ResourceEntry = z.object({ name: z.string(), path: z.string(), description: z.string() });
export type ResourceEntry = z.infer<typeof ResourceEntry>;

/** What the app ships: the default model and its chat variant (a LoRA adapter of it), sample datasets, evaluation texts. */
export const Resources = z.object({
  defaultModel: ResourceEntry.nullable(),
  chatModel: ResourceEntry.nullable(),
  datasets: z.array(ResourceEntry),
  evalTexts: z.array(ResourceEntry),
});
export type Resources = z.infer<typeof Resources>;

export const CompareRow = z.object({ prompt: z.string(), base: z.string(), tuned: z.string() });
export type CompareRow = z.infer<typeof CompareRow>;

/** A run as the Runs page lists it: what it trained, how far and how well it got, the job running it now. */
export const RunSummary = z.object({
  run: Run,
  modelName: z.string().nullable(),
  datasetName: z.string().nullable(),
  /** 'lora' or 'full' for a fine-tuning run (its config's method); null for other kinds. */
  method: z.string().nullable(),
  /** Tokens trained on so far (at its newest checkpoint); null when unknown. */
  tokens: count.nullable(),
  bestValLoss: z.number().nullable(),
  lastStep: count.nullable(),
  /** The unfinished job training it (running or waiting), if any: pause and cancel act on it. */
  jobId: z.string().nullable(),
});
export type RunSummary = z.infer<typeof RunSummary>;

// ---- the paper lab ---------------------------------------------------------------

/** An experiment by its name (bundled, or in the home's lab folder) or an experiment file's path, at a scale. */
export const LabTarget = z.object({ experiment: z.string().min(1).max(4096), scale: LabScale.default('tiny') });
export type LabTarget = z.input<typeof LabTarget>;

/** A lab result as the Lab page shows it: the result (rows with their runs, the claims), its table and plots, the job running it. */
export const LabView = z.object({
  result: LabResult,
  table: LabTable,
  plots: z.array(LabPlot),
  /** The unfinished lab job of this experiment and scale (running or waiting), if any: pause and cancel act on it. */
  jobId: z.string().nullable(),
});
export type LabView = z.infer<typeof LabView>;

// ---- jobs ----------------------------------------------------------------------

/** What a finished job of each kind gives back (in its last 'job' event). */
export const JOB_RESULTS = {
  /** A chat answer (its text streams as token events and is stored with the message). */
  generate: z.object({ tokens: count, finish: z.string() }),
  finetune: FinetuneOutcome,
  compare: z.object({ rows: z.array(CompareRow) }),
  quantize: z.object({ sourceModelId: id, outputModelId: id, reportId: id, report: QuantReport }),
  inspect: InspectReport,
  convert: z.object({ reportId: id, report: ConversionReport }),
  pull: z.object({ modelId: id, name: z.string(), bytes: count, commit: z.string(), alreadyRecorded: z.boolean() }),
  /** The evaluation report as recorded. */
  eval: Report,
  /** Where the export went and what it wrote. */
  export: ExportOutcome,
  /** A LoRA adapter merged into its base model: the plain model recorded. */
  merge: z.object({ modelId: id, name: z.string() }),
  /** A lab experiment's result table once every variant is trained and measured. */
  lab: LabResult,
  /** A job folder for a machine with PyTorch (job.export), with the command to run there. */
  'job-export': JobExportResult,
};
export type JobKind = keyof typeof JOB_RESULTS;
export type JobResult<K extends JobKind> = z.infer<(typeof JOB_RESULTS)[K]>;

export const JOB_STATES = ['running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

const JobFields = z.object({
  id: z.string(),
  title: z.string(),
  state: z.enum(JOB_STATES),
  startedAt: z.number(),
  progress: JobProgress.optional(),
  error: z.string().optional(),
  /** The run this job records (a fine-tuning job's: known from its start when resuming, else once the run is created). */
  runId: id.optional(),
  /** Set while the job waits for its lane (see engine/server/jobs.ts): the title of the job it waits for. It has not started; it can be cancelled. */
  waitingFor: z.string().optional(),
});
const snapshotOf = <K extends JobKind>(kind: K) => JobFields.extend({ kind: z.literal(kind), result: z.optional(JOB_RESULTS[kind]) });

/** A job as the UI sees it; its kind tells the type of its result (set once it is done). */
export const JobSnapshot = z.discriminatedUnion('kind', [
  snapshotOf('generate'),
  snapshotOf('finetune'),
  snapshotOf('compare'),
  snapshotOf('quantize'),
  snapshotOf('inspect'),
  snapshotOf('convert'),
  snapshotOf('pull'),
  snapshotOf('eval'),
  snapshotOf('export'),
  snapshotOf('merge'),
  snapshotOf('lab'),
  snapshotOf('job-export'),
]);
export type JobSnapshot = z.infer<typeof JobSnapshot>;

// ---- sizes -------------------------------------------------------------------

const MiB = 1024 * 1024;
/** The largest frame (a request's JSON, UTF-8) a WebSocket connection takes; a larger one closes it (1009). */
export const MAX_FRAME_BYTES = 16 * MiB;
/** The largest dataset upload: UTF-8 bytes of the whole text. */
export const UPLOAD_MAX_BYTES = 200 * MiB;
/** The most characters in one piece of an upload: JSON spends at most 6 bytes on one (`\u001f`), so a piece's frame fits. */
export const UPLOAD_PIECE_CHARS = MAX_FRAME_BYTES / 8;

// ---- requests --------------------------------------------------------------

const Removed = z.object({ removed: z.literal(true) });
const JobStarted = z.object({ jobId: z.string() });
const NoParams = z.object({});

export const requests = {
  'engine.status': { params: NoParams, result: EngineStatus },

  'models.list': { params: NoParams, result: z.array(Model) },
  'models.get': { params: z.object({ id }), result: ModelDetails },
  /** Records a model folder; a folder with the same content as a model already recorded gives that model back, marked alreadyImported. */
  'models.import': {
    params: z.object({ path: z.string().min(1), name: z.string().min(1).optional() }),
    result: Model.extend({ alreadyImported: z.boolean() }),
  },
  'models.remove': { params: z.object({ id }), result: Removed },
  /** Merges a LoRA adapter model into its base model as a new plain model (a job; its result names it). */
  'models.merge': { params: z.object({ id }), result: JobStarted },

  'chats.list': { params: z.object({ search: z.string().optional() }), result: z.array(Chat) },
  'chats.create': {
    params: z.object({ modelId: id, title: z.string().optional(), systemPrompt: z.string().optional(), sampling: Sampling.partial().optional() }),
    result: ChatView,
  },
  'chats.get': { params: z.object({ id, leafId: id.optional() }), result: ChatView },
  'chats.update': {
    params: z.object({
      id,
      title: z.string().min(1).optional(),
      modelId: id.optional(),
      systemPrompt: z.string().optional(),
      sampling: Sampling.partial().optional(),
      /** null: back to the model's own / the plain template. */
      chatTemplate: z.string().nullable().optional(),
    }),
    result: ChatView,
  },
  'chats.remove': { params: z.object({ id }), result: Removed },
  'chats.export': {
    params: z.object({ id, leafId: id.optional(), format: z.enum(['markdown', 'json']) }),
    result: z.object({ filename: z.string(), content: z.string() }),
  },

  /** Adds a user message (after `parentId`, default: the end of the current thread) and starts the answer. */
  'chat.send': { params: z.object({ chatId: id, content: z.string().min(1), parentId: id.nullable().optional() }), result: AnswerStarted },
  /** A new answer to the same user message, as a sibling branch of `messageId`. */
  'chat.regenerate': { params: z.object({ chatId: id, messageId: id }), result: AnswerStarted },
  /** A changed copy of user message `messageId` as a sibling branch, then its answer. */
  'chat.edit': { params: z.object({ chatId: id, messageId: id, content: z.string().min(1) }), result: AnswerStarted },

  'jobs.list': { params: NoParams, result: z.array(JobSnapshot) },
  /** Stops a job. A fine-tuning run pauses (with a checkpoint) unless mode is 'cancel'. */
  'jobs.cancel': { params: z.object({ jobId: z.string(), mode: z.enum(['pause', 'cancel']).default('pause') }), result: z.object({ cancelled: z.boolean() }) },

  'datasets.inspect': {
    params: z.object({ path: z.string().min(1), modelId: id, maxSeqLen: FinetuneConfig.shape.maxSeqLen, lossOn: FinetuneConfig.shape.lossOn }),
    result: DatasetInspection,
  },
  /**
   * Saves a dropped file's text into the workbench's datasets folder, in pieces that each fit a frame
   * (engine/protocol/upload.ts cuts them): the first piece (no uploadId) announces the name and the
   * whole text's UTF-8 bytes, so a file over UPLOAD_MAX_BYTES is refused before it is sent; later
   * pieces repeat both with the uploadId. The piece that completes the bytes saves the file: its path.
   */
  'datasets.upload': {
    params: z.object({
      name: z.string().min(1).max(200),
      bytes: count.max(UPLOAD_MAX_BYTES, `a dataset upload is at most ${UPLOAD_MAX_BYTES / MiB} MiB`),
      content: z.string().max(UPLOAD_PIECE_CHARS, `a piece of an upload is at most ${UPLOAD_PIECE_CHARS} characters`),
      uploadId: z.string().min(1).max(100).optional(),
    }),
    result: z.object({ uploadId: z.string(), received: count, path: z.string().nullable() }),
  },
  'finetune.estimate': { params: FinetuneRequest, result: FinetuneEstimate },
  /** Starts a run in the background; its job's result names the run. */
  'finetune.start': { params: FinetuneRequest, result: JobStarted },
  'finetune.resume': { params: z.object({ runId: id }), result: JobStarted },
  /** Answers of the base model and of a fine-tuned model (folder) to the same prompts, as a job. */
  'finetune.compare': {
    params: z.object({
      baseModelId: id,
      tunedPath: z.string().min(1),
      prompts: z.array(z.string().min(1)).min(1).max(8),
      maxNewTokens: z.number().int().min(1).max(512).default(96),
    }),
    result: JobStarted,
  },
  'resources.list': { params: NoParams, result: Resources },

  /** Quantizes a model into a new folder (a job); its result names the report and the new model. */
  'quantize.start': {
    params: z.object({
      modelId: id,
      method: QuantMethod,
      groupSize: z.literal(GROUP_SIZES).optional(),
      keepEmbeddingFp: z.boolean().default(false),
      /** Default: the bundled held-out text. */
      evalText: z.string().min(1).optional(),
    }),
    result: JobStarted,
  },

  /**
   * Exports a model for another tool (a job): hf (transformers, PEFT), gguf
   * (llama.cpp, Ollama, LM Studio) or onnx (transformers.js). Written into
   * the home's exports folder, or into `outDir` when that does not exist yet
   * or is empty (an earlier export there is replaced).
   */
  'export.start': {
    params: z.object({ modelId: id, options: ExportOptions, outDir: z.string().min(1).max(4096).optional() }),
    result: JobStarted,
  },

  /** Storage, FLOPs and KV-cache costs of every sharing strategy (arithmetic only, instant). */
  'inspect.costs': {
    params: z.object({
      preset: z.string().optional(),
      modelId: id.optional(),
      repeats: z.number().int().min(1).max(8).default(2),
      contextTokens: z.number().int().min(1).max(32768).default(512),
    }),
    result: z.array(StrategyCosts),
  },
  /** A full inspection (a job): costs, and for a model its weight and activation analysis; latency when asked. */
  'inspect.start': {
    params: z.object({
      preset: z.string().optional(),
      modelId: id.optional(),
      strategy: SharingStrategy.optional(),
      repeats: z.number().int().min(1).max(8).optional(),
      probeText: z.string().min(1).optional(),
      latency: z.boolean().default(false),
    }),
    result: JobStarted,
  },
  /** share: a 2N-block model → an N-block layer-shared one; unshare: a shared model → independent blocks (a job). */
  'convert.start': {
    params: z.object({
      modelId: id,
      operation: z.enum(['share', 'unshare']),
      strategy: z.enum(SHARED_STRATEGIES).default('immediate'),
      pick: z.enum(BLOCK_PICKS).default('every-other'),
    }),
    result: JobStarted,
  },
  'presets.list': { params: NoParams, result: z.array(z.string()) },

  /**
   * Downloads a model repo of the Hugging Face Hub into the home's models
   * folder (a job in its own lane: it need not wait for computing jobs);
   * running it again resumes an interrupted download. Its result names the model.
   */
  'hub.pull': {
    params: z.object({
      repo: z.string().min(3).max(200),
      revision: z.string().min(1).max(200).optional(),
      /** For gated and private repos; default: the engine's HF_TOKEN. */
      token: z.string().min(1).max(1000).optional(),
    }),
    result: JobStarted,
  },
  /**
   * Evaluates a model or a checkpoint (a job): perplexity of a text (default:
   * the bundled held-out text), or zero-shot multiple choice on a tasks file.
   * The result is recorded as an `evaluation` report of what was measured.
   */
  'eval.start': {
    params: z
      .object({
        modelId: id.optional(),
        checkpointId: id.optional(),
        text: z.string().min(1).optional(),
        tasks: z.string().min(1).optional(),
        limit: z.number().int().min(1).optional(),
      })
      .refine((p) => (p.modelId === undefined) !== (p.checkpointId === undefined), 'give a modelId or a checkpointId')
      .refine((p) => p.text === undefined || p.tasks === undefined, 'give a text or a tasks file, not both'),
    result: JobStarted,
  },

  /** A training checkpoint as a model of its own (recorded once), to chat with, fine-tune further or quantize. */
  'checkpoints.asModel': { params: z.object({ checkpointId: id }), result: Model },
  'runs.list': { params: NoParams, result: z.array(Run) },
  'runs.get': { params: z.object({ id }), result: z.object({ run: Run, checkpoints: z.array(Checkpoint), metrics: z.array(z.string()) }) },
  'runs.curve': { params: z.object({ id, name: z.string() }), result: MetricCurve },
  /** Every run, newest first, as the Runs page lists it. */
  'runs.summaries': { params: NoParams, result: z.array(RunSummary) },
  /** Names a run; an empty name clears it. */
  'runs.rename': { params: z.object({ id, name: z.string().max(RUN_NAME_MAX) }), result: Run },
  /** Cancels a run: its job stops without a pause checkpoint, or a paused or interrupted run is closed for good. */
  'runs.cancel': { params: z.object({ id }), result: Run },
  /** Deletes a run that is not running, with its metrics, checkpoints and files. */
  'runs.remove': { params: z.object({ id }), result: Removed },
  /**
   * A fine-tuning configuration as a job folder for a machine with PyTorch (mlw job export), written into outDir (new or empty; default: a new folder
   * in the home's exports) by a 'job-export' job (tokenizing, exporting the base, writing shards), whose result is the folder and its command.
   */
  'job.export': { params: FinetuneRequest.extend({ outDir: z.string().min(1).max(4096).optional() }), result: JobStarted },
  /** A job folder's results as a run (mlw job import): its curves, checkpoints and machine; the same job again extends its run. */
  'job.import': { params: z.object({ dir: z.string().min(1).max(4096) }), result: JobImportResult },
  /** The lab's experiments: bundled ones, then the user's own copies in the home's lab folder (one that does not read says why). */
  'lab.list': { params: NoParams, result: z.array(LabExperimentSummary) },
  /**
   * Runs an experiment (a job): every variant × seed a pre-training run, the
   * finished skipped, the paused or interrupted resumed; then each is evaluated.
   * Pausing (jobs.cancel) pauses the variant training; starting it again resumes.
   */
  'lab.start': {
    params: LabTarget.extend({
      /** Training runtime of new runs (resumed ones keep theirs). */
      runtime: TrainRuntime.optional(),
      /** Held-out text (default: the bundled one). */
      evalText: z.string().min(1).max(4096).optional(),
    }),
    result: JobStarted,
  },
  /** An experiment's result as far as it is trained and measured (trains and measures nothing). */
  'lab.result': { params: LabTarget.extend({ evalText: z.string().min(1).max(4096).optional() }), result: LabView },
  /** Writes the result as a report (report.md and one SVG per plot) into a new folder in the home's exports. */
  'lab.report': {
    params: LabTarget.extend({ evalText: z.string().min(1).max(4096).optional() }),
    result: z.object({ dir: z.string(), markdown: z.string(), plots: z.array(z.string()) }),
  },
  'reports.list': { params: z.object({ modelId: id.optional(), kind: z.enum(REPORT_KINDS).optional() }), result: z.array(Report) },
} satisfies Record<string, { params: z.ZodType; result: z.ZodType }>;

export type Method = keyof typeof requests;
/** What a caller sends. */
export type Params<M extends Method> = z.input<(typeof requests)[M]['params']>;
/** What a handler receives: the params as validated, defaults filled in. */
export type ValidParams<M extends Method> = z.output<(typeof requests)[M]['params']>;
export type Result<M extends Method> = z.output<(typeof requests)[M]['result']>;
/** The engine's answer to one method, typed by its schemas. */
export type Handler<M extends Method> = (params: ValidParams<M>) => Result<M> | Promise<Result<M>>;
/** One handler for every method. */
export type Handlers = { [M in Method]: Handler<M> };

// ---- events ------------------------------------------------------------------

export type EngineEvent =
  | { type: 'job'; job: JobSnapshot }
  /** A generated piece of an answer; `text` is what to append to the message. */
  | { type: 'token'; jobId: string; chatId: number; messageId: number; text: string; tokens: number; tokensPerSecond: number }
  | { type: 'chat'; chatId: number }
  | { type: 'models' }
  | { type: 'notice'; level: 'info' | 'warning' | 'error'; message: string };

// ---- wire format -------------------------------------------------------------

/**
 * Error codes in responses: a request the engine refuses as given, the other
 * kinds an engine error carries (engine/errors.ts), any other failure, and
 * (client side) an engine that went away.
 */
export type ErrorCode = 'bad_request' | 'not_found' | 'conflict' | 'busy' | 'failed' | 'engine_restarted';

export type RequestFrame = { id: number; method: string; params: unknown };
export type ResponseFrame = { id: number; result: unknown } | { id: number; error: { message: string; code: ErrorCode } };
export type EventFrame = { event: EngineEvent };
export type ServerFrame = ResponseFrame | EventFrame;
