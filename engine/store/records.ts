// What the store holds, as the rest of the engine sees it: record types,
// the allowed values of every enum column, and zod schemas for the JSON
// columns, which are checked when read back because anything (another app
// version, a hand edit) may have written them. The records the protocol
// carries to the UI are zod schemas too, so that its answers can be checked.
//
// Imported by the protocol, hence by the renderer: zod and Node-free modules only.
import { z } from 'zod';
import { KindedError } from '../errors';
import { BadRecordError } from './errors';

// These lists must match the CHECK constraints in migrations.ts.
export const MODEL_SOURCES = ['imported', 'downloaded', 'derived'] as const;
export const RUN_KINDS = ['finetune', 'quantize', 'eval', 'pretrain', 'convert'] as const;
export const RUN_STATUSES = ['queued', 'running', 'paused', 'interrupted', 'completed', 'failed', 'cancelled'] as const;
export const CHECKPOINT_KINDS = ['full', 'lora', 'quantized'] as const;
export const MESSAGE_ROLES = ['system', 'user', 'assistant'] as const;
export const REPORT_KINDS = ['quantization', 'evaluation', 'inspection', 'conversion'] as const;

export type ModelSource = (typeof MODEL_SOURCES)[number];
export type RunKind = (typeof RUN_KINDS)[number];
export type RunStatus = (typeof RUN_STATUSES)[number];
export type CheckpointKind = (typeof CHECKPOINT_KINDS)[number];
export type MessageRole = (typeof MESSAGE_ROLES)[number];
export type ReportKind = (typeof REPORT_KINDS)[number];

/** Which status may follow which. Terminal states have no way out. */
export const RUN_TRANSITIONS: Record<RunStatus, readonly RunStatus[]> = {
  // interrupted: its process died, or the disk filled, before it started
  queued: ['running', 'interrupted', 'failed', 'cancelled'],
  running: ['paused', 'interrupted', 'completed', 'failed', 'cancelled'],
  paused: ['running', 'failed', 'cancelled'],
  interrupted: ['running', 'failed', 'cancelled'],
  completed: [],
  failed: [],
  cancelled: [],
};
export const TERMINAL_STATUSES: readonly RunStatus[] = ['completed', 'failed', 'cancelled'];
/** A run in one of these continues from its newest checkpoint: paused on purpose, or interrupted by a crash. */
export const RESUMABLE_STATUSES = ['paused', 'interrupted'] as const satisfies readonly RunStatus[];

/** The longest name a run may be given (migrations.ts checks the same). */
export const RUN_NAME_MAX = 200;

export function isResumable(status: RunStatus): boolean {
  return (RESUMABLE_STATUSES as readonly RunStatus[]).includes(status);
}

/** Refuses (a conflict) to resume a run that is not paused or interrupted. */
export function requireResumable(run: { id: number; status: RunStatus }): void {
  if (!isResumable(run.status))
    throw new KindedError('conflict', `run ${run.id} is ${run.status}; only ${RESUMABLE_STATUSES.join(' or ')} runs can be resumed`);
}

export const JsonObject = z.record(z.string(), z.unknown());
export type JsonObject = z.infer<typeof JsonObject>;

export const SamplingSettings = z.looseObject({
  temperature: z.number().min(0).optional(),
  topK: z.number().int().min(0).optional(),
  topP: z.number().min(0).max(1).optional(),
  maxNewTokens: z.number().int().positive().optional(),
  repetitionPenalty: z.number().positive().optional(),
  seed: z.number().int().optional(),
});
export type SamplingSettings = z.infer<typeof SamplingSettings>;

/** Why an answer ended, as its message records it. */
export const ANSWER_FINISHES = ['eos', 'stop', 'length', 'context', 'cancelled'] as const;
export type AnswerFinish = (typeof ANSWER_FINISHES)[number];

export const MessageTimings = z.looseObject({
  firstTokenMs: z.number().min(0).optional(),
  totalMs: z.number().min(0).optional(),
  tokensPerSecond: z.number().min(0).optional(),
  /** The answer was stopped before it ended by itself. */
  stopped: z.boolean().optional(),
  /** Earliest turns of the conversation left out of the prompt to fit the model's context. */
  droppedTurns: z.number().int().min(0).optional(),
  /** Why the answer ended: the end-of-text token, a stop string of the template, max new tokens, the context was full, or the user stopped it. */
  finish: z.enum(ANSWER_FINISHES).optional(),
  /** The model that wrote the answer, and the runtime it ran on (e.g. 'onnx'). */
  model: z.string().optional(),
  runtime: z.string().optional(),
});
export type MessageTimings = z.infer<typeof MessageTimings>;

export const ValidationSplit = z.looseObject({
  fraction: z.number().min(0).max(1).optional(),
  seed: z.number().int().optional(),
  /** A separate validation file instead of a split. */
  path: z.string().optional(),
  rows: z.number().int().min(0).optional(),
});
export type ValidationSplit = z.infer<typeof ValidationSplit>;

/** Metric values at a checkpoint; null stands for NaN, which JSON cannot hold. */
export const CheckpointMetrics = z.record(z.string(), z.number().nullable());
export type CheckpointMetrics = z.infer<typeof CheckpointMetrics>;

export function parseJsonColumn<T>(schema: z.ZodType<T>, text: string, table: string, id: number, column: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRecordError(table, id, column, (err as Error).message);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new BadRecordError(table, id, column, z.prettifyError(parsed.error).replace(/\s+/g, ' '));
  return parsed.data;
}

// Times are milliseconds since the Unix epoch; paths are absolute.

const id = z.number().int().positive();
const time = z.number();
const count = z.number().int().min(0);

export const Model = z.object({
  id,
  name: z.string(),
  source: z.enum(MODEL_SOURCES),
  format: z.string(),
  path: z.string(),
  config: JsonObject,
  paramCount: count.nullable(),
  bytes: count.nullable(),
  parentModelId: id.nullable(),
  /** The run that produced it, for derived models. */
  runId: id.nullable(),
  createdAt: time,
});
export type Model = z.infer<typeof Model>;

export interface NewModel {
  name: string;
  source: ModelSource;
  format: string;
  path: string;
  config?: JsonObject;
  paramCount?: number | null;
  bytes?: number | null;
  parentModelId?: number | null;
  runId?: number | null;
}

export interface Dataset {
  id: number;
  name: string;
  path: string;
  format: string;
  sha256: string;
  rowCount: number;
  tokenCount: number | null;
  validationSplit: ValidationSplit | null;
  createdAt: number;
}

export interface NewDataset {
  name: string;
  path: string;
  format: string;
  sha256: string;
  rowCount: number;
  tokenCount?: number | null;
  validationSplit?: ValidationSplit | null;
}

/** A process on a machine, told apart from a later one with the same pid (see liveness.ts). */
export const ProcessIdentity = z.object({
  pid: z.number().int(),
  host: z.string(),
  bootId: z.string(),
  /** Start time of the process in clock ticks since boot (Linux); null where unknown. */
  startTime: z.string().nullable(),
});
export type ProcessIdentity = z.infer<typeof ProcessIdentity>;

export const Run = z.object({
  id,
  kind: z.enum(RUN_KINDS),
  /** The name people gave it (null: shown as "run <id>"). */
  name: z.string().min(1).max(RUN_NAME_MAX).nullable(),
  status: z.enum(RUN_STATUSES),
  modelId: id.nullable(),
  datasetId: id.nullable(),
  config: JsonObject,
  createdAt: time,
  startedAt: time.nullable(),
  finishedAt: time.nullable(),
  /** Why it failed, or why it was interrupted when that is known (a full disk, a process that ended before starting it). */
  error: z.string().nullable(),
  /** The process that last ran it (set when it goes to running). */
  owner: ProcessIdentity.nullable(),
});
export type Run = z.infer<typeof Run>;

export interface NewRun {
  kind: RunKind;
  modelId?: number | null;
  datasetId?: number | null;
  config?: JsonObject;
}

export interface MetricPoint {
  step: number;
  name: string;
  /** NaN is kept (a diverging loss is worth recording). */
  value: number;
  /** Defaults to the time of the append. */
  wallTime?: number;
}

/** One metric of one run in step order, as columns (the shape charting libraries take). */
export const MetricCurve = z.object({
  name: z.string(),
  steps: z.array(z.number().int()),
  values: z.array(z.number()),
  wallTimes: z.array(time),
});
export type MetricCurve = z.infer<typeof MetricCurve>;

export const Checkpoint = z.object({
  id,
  runId: id,
  step: count,
  kind: z.enum(CHECKPOINT_KINDS),
  path: z.string(),
  /** sha256 of the folder's files, see folder-digest.ts. */
  sha256: z.string(),
  bytes: count,
  metrics: CheckpointMetrics,
  createdAt: time,
});
export type Checkpoint = z.infer<typeof Checkpoint>;

export const Chat = z.object({
  id,
  title: z.string(),
  modelId: id.nullable(),
  checkpointId: id.nullable(),
  systemPrompt: z.string(),
  sampling: SamplingSettings,
  /** null: the model's own template (or the plain default). */
  chatTemplate: z.string().nullable(),
  createdAt: time,
  updatedAt: time,
});
export type Chat = z.infer<typeof Chat>;

export interface NewChat {
  title?: string;
  modelId?: number | null;
  checkpointId?: number | null;
  systemPrompt?: string;
  sampling?: SamplingSettings;
  chatTemplate?: string | null;
}

export type ChatPatch = Partial<NewChat>;

export const Message = z.object({
  id,
  chatId: id,
  /** null for the first message of a conversation; siblings are alternative branches. */
  parentId: id.nullable(),
  role: z.enum(MESSAGE_ROLES),
  content: z.string(),
  contentTokens: count.nullable(),
  promptTokens: count.nullable(),
  timings: MessageTimings.nullable(),
  createdAt: time,
});
export type Message = z.infer<typeof Message>;

export interface NewMessage {
  chatId: number;
  parentId: number | null;
  role: MessageRole;
  content: string;
  contentTokens?: number | null;
  promptTokens?: number | null;
  timings?: MessageTimings | null;
}

/** What may change in a message after it was added (an answer still streaming in). */
export interface MessagePatch {
  content?: string;
  contentTokens?: number | null;
  promptTokens?: number | null;
  timings?: MessageTimings | null;
}

export const Report = z.object({
  id,
  kind: z.enum(REPORT_KINDS),
  modelId: id.nullable(),
  checkpointId: id.nullable(),
  runId: id.nullable(),
  body: JsonObject,
  createdAt: time,
});
export type Report = z.infer<typeof Report>;

export interface NewReport {
  kind: ReportKind;
  modelId?: number | null;
  checkpointId?: number | null;
  runId?: number | null;
  body: JsonObject;
}
