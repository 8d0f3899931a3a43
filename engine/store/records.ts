// What the store holds, as the rest of the engine sees it: record types,
// the allowed values of every enum column, and zod schemas for the JSON
// columns, which are checked when read back because anything (another app
// version, a hand edit) may have written them.
import { z } from 'zod';
import { BadRecordError } from './errors';
import type { ProcessIdentity } from './liveness';

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
  queued: ['running', 'failed', 'cancelled'],
  running: ['paused', 'interrupted', 'completed', 'failed', 'cancelled'],
  paused: ['running', 'failed', 'cancelled'],
  interrupted: ['running', 'failed', 'cancelled'],
  completed: [],
  failed: [],
  cancelled: [],
};
export const TERMINAL_STATUSES: readonly RunStatus[] = ['completed', 'failed', 'cancelled'];

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

export const MessageTimings = z.looseObject({
  firstTokenMs: z.number().min(0).optional(),
  totalMs: z.number().min(0).optional(),
  tokensPerSecond: z.number().min(0).optional(),
  /** The answer was stopped before it ended by itself. */
  stopped: z.boolean().optional(),
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

export interface Model {
  id: number;
  name: string;
  source: ModelSource;
  format: string;
  path: string;
  config: JsonObject;
  paramCount: number | null;
  bytes: number | null;
  parentModelId: number | null;
  /** The run that produced it, for derived models. */
  runId: number | null;
  createdAt: number;
}

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

export interface Run {
  id: number;
  kind: RunKind;
  status: RunStatus;
  modelId: number | null;
  datasetId: number | null;
  config: JsonObject;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  error: string | null;
  /** The process that last ran it (set when it goes to running). */
  owner: ProcessIdentity | null;
}

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
export interface MetricCurve {
  name: string;
  steps: number[];
  values: number[];
  wallTimes: number[];
}

export interface Checkpoint {
  id: number;
  runId: number;
  step: number;
  kind: CheckpointKind;
  path: string;
  /** sha256 of the folder's files, see folder-digest.ts. */
  sha256: string;
  bytes: number;
  metrics: CheckpointMetrics;
  createdAt: number;
}

export interface Chat {
  id: number;
  title: string;
  modelId: number | null;
  checkpointId: number | null;
  systemPrompt: string;
  sampling: SamplingSettings;
  /** null: the model's own template (or the plain default). */
  chatTemplate: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewChat {
  title?: string;
  modelId?: number | null;
  checkpointId?: number | null;
  systemPrompt?: string;
  sampling?: SamplingSettings;
  chatTemplate?: string | null;
}

export type ChatPatch = Partial<NewChat>;

export interface Message {
  id: number;
  chatId: number;
  /** null for the first message of a conversation; siblings are alternative branches. */
  parentId: number | null;
  role: MessageRole;
  content: string;
  contentTokens: number | null;
  promptTokens: number | null;
  timings: MessageTimings | null;
  createdAt: number;
}

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

export interface Report {
  id: number;
  kind: ReportKind;
  modelId: number | null;
  checkpointId: number | null;
  runId: number | null;
  body: JsonObject;
  createdAt: number;
}

export interface NewReport {
  kind: ReportKind;
  modelId?: number | null;
  checkpointId?: number | null;
  runId?: number | null;
  body: JsonObject;
}
