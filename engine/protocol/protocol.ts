// The one protocol between the engine and every UI (web mode over a
// WebSocket, Electron over IPC): requests with typed params and results,
// and events. Params are validated at run time on the engine side; results
// and events are produced by the engine and typed here.
//
// This module is imported by the renderer: it may import zod and *types*
// from the engine, nothing that touches Node.
import { z } from 'zod';
import type { Chat, Checkpoint, Message, MetricCurve, Model, Report, Run, SamplingSettings } from '../store/records';
import type { InspectReport, StrategyCosts } from '../inspect/schema';

export type { Chat, Checkpoint, Message, MetricCurve, Model, Report, Run, SamplingSettings, InspectReport, StrategyCosts };

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

export interface EngineStatus {
  version: string;
  backend: string;
  threads: number;
  /** Resident memory of the engine process, bytes. */
  rssBytes: number;
  /** Memory held by TensorFlow.js tensors, bytes. */
  tensorBytes: number;
  /** The chat model in memory and the runtime it runs on (e.g. "onnx (onnxruntime-node 1.30.0, cpu, 2 threads, contrib ops)"). */
  loadedModel: { modelId: number; name: string; runtime: string } | null;
  home: string;
}

export interface ModelDetails {
  model: Model;
  /** Parsed architecture (camelCase MobileLLMConfig) or null when the folder no longer loads. */
  config: Record<string, unknown> | null;
  params: { total: number; embedding: number; nonEmbedding: number; perBlock: number } | null;
  effectiveDepth: number | null;
  schedule: number[] | null;
  bytesOnDisk: number;
  hasTokenizer: boolean;
  chatTemplate: string | null;
  /** Why it does not load, if it does not. */
  problem: string | null;
}

export interface ChatView {
  chat: Chat;
  /** Every message of the chat (a tree through parentId). */
  messages: Message[];
  /** The branch currently shown, root → leaf. */
  thread: number[];
  /** Name of the template used to build prompts, and its text. */
  template: { name: string; source: string };
}

export type JobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface JobSnapshot {
  id: string;
  kind: string;
  title: string;
  state: JobState;
  startedAt: number;
  progress?: { phase?: string; done?: number; total?: number; unit?: string; metrics?: Record<string, number>; message?: string };
  error?: string;
  result?: unknown;
}

// ---- fine-tuning --------------------------------------------------------------

const LORA_TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;

/** A fine-tuning run as the wizard sets it up (the engine maps modelId to its folder). */
export const FinetuneRequest = z.object({
  modelId: id,
  data: z.string().min(1),
  val: z.string().min(1).nullable().optional(),
  valFraction: z.number().min(0).max(0.5).optional(),
  method: z.enum(['lora', 'full']),
  lora: z
    .object({
      rank: z.number().int().min(1).max(256),
      alpha: z.number().positive(),
      dropout: z.number().min(0).max(0.9),
      targets: z.array(z.enum(LORA_TARGETS)).min(1),
    })
    .optional(),
  maxSeqLen: z.number().int().min(16).max(8192),
  lossOn: z.enum(['answers', 'all']),
  packing: z.boolean(),
  train: z.object({
    epochs: z.number().int().min(1).max(100),
    maxSteps: z.number().int().positive().optional(),
    lr: z.number().positive().max(1),
    warmupSteps: z.number().int().min(0),
    decay: z.enum(['cosine', 'linear', 'constant']),
    batchSize: z.number().int().min(1).max(256),
    gradAccum: z.number().int().min(1).max(256),
    evalEvery: z.number().int().min(0),
    saveEvery: z.number().int().min(0),
    seed: z.number().int(),
  }),
});
export type FinetuneRequest = z.infer<typeof FinetuneRequest>;

/** Presets of the wizard's step 3. */
export const FINETUNE_PRESETS: Record<'quick' | 'balanced' | 'thorough', Pick<FinetuneRequest, 'method' | 'lora' | 'maxSeqLen'> & { train: Partial<FinetuneRequest['train']> }> = {
  // Every linear adapted at a high rate for two epochs: on the bundled model and sample dataset this is
  // what it takes for the answers to change visibly (q,v alone at 1e-3 barely moves a 9M model).
  quick: { method: 'lora', lora: { rank: 16, alpha: 32, dropout: 0, targets: [...LORA_TARGETS] }, maxSeqLen: 256, train: { epochs: 2, lr: 2e-3, batchSize: 4, gradAccum: 1, warmupSteps: 5 } },
  balanced: { method: 'lora', lora: { rank: 16, alpha: 32, dropout: 0.05, targets: ['q', 'k', 'v', 'o'] }, maxSeqLen: 512, train: { epochs: 2, lr: 5e-4, batchSize: 4, gradAccum: 2, warmupSteps: 10 } },
  thorough: { method: 'lora', lora: { rank: 32, alpha: 64, dropout: 0.05, targets: [...LORA_TARGETS] }, maxSeqLen: 512, train: { epochs: 3, lr: 3e-4, batchSize: 4, gradAccum: 4, warmupSteps: 20 } },
};

export interface DatasetInspection {
  file: string;
  sha256: string;
  format: string;
  rows: number;
  /** "line N: problem" (at most 50). */
  issues: { line: number; message: string }[];
  issueCount: number;
  summary: { rows: number; tokens: number; learnedTokens: number; longest: { line: number; tokens: number } | null; truncated: number; skipped: number } | null;
  /** The first examples as rendered for training: text pieces, and whether the loss covers them. */
  preview: { line: number; segments: { text: string; learn: boolean }[] }[];
}

export interface FinetuneEstimate {
  ok: boolean;
  /** Why it cannot run, when !ok. */
  reason: string | null;
  memoryBytes: { weights: number; gradients: number; optimizer: number; activations: number; total: number } | null;
  limitBytes: number | null;
  limitReason: string | null;
  stepSeconds: number | null;
  totalSteps: number | null;
  trainableParams: number | null;
}

export interface ResourceEntry {
  name: string;
  path: string;
  description: string;
}

/** What the app ships: the default model, sample datasets, evaluation texts. */
export interface Resources {
  defaultModel: ResourceEntry | null;
  datasets: ResourceEntry[];
  evalTexts: ResourceEntry[];
}

export interface CompareRow {
  prompt: string;
  base: string;
  tuned: string;
}

// ---- requests --------------------------------------------------------------

export const requests = {
  'engine.status': { params: z.object({}), result: null as unknown as EngineStatus },

  'models.list': { params: z.object({}), result: null as unknown as Model[] },
  'models.get': { params: z.object({ id }), result: null as unknown as ModelDetails },
  'models.import': { params: z.object({ path: z.string().min(1), name: z.string().min(1).optional() }), result: null as unknown as Model },
  'models.remove': { params: z.object({ id }), result: null as unknown as { removed: true } },

  'chats.list': { params: z.object({ search: z.string().optional() }), result: null as unknown as Chat[] },
  'chats.create': {
    params: z.object({ modelId: id, title: z.string().optional(), systemPrompt: z.string().optional(), sampling: Sampling.partial().optional() }),
    result: null as unknown as ChatView,
  },
  'chats.get': { params: z.object({ id, leafId: id.optional() }), result: null as unknown as ChatView },
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
    result: null as unknown as ChatView,
  },
  'chats.remove': { params: z.object({ id }), result: null as unknown as { removed: true } },
  'chats.export': { params: z.object({ id, leafId: id.optional(), format: z.enum(['markdown', 'json']) }), result: null as unknown as { filename: string; content: string } },

  /** Adds a user message (after `parentId`, default: the end of the current thread) and starts the answer. */
  'chat.send': { params: z.object({ chatId: id, content: z.string().min(1), parentId: id.nullable().optional() }), result: null as unknown as AnswerStarted },
  /** A new answer to the same user message, as a sibling branch of `messageId`. */
  'chat.regenerate': { params: z.object({ chatId: id, messageId: id }), result: null as unknown as AnswerStarted },
  /** A changed copy of user message `messageId` as a sibling branch, then its answer. */
  'chat.edit': { params: z.object({ chatId: id, messageId: id, content: z.string().min(1) }), result: null as unknown as AnswerStarted },

  'jobs.list': { params: z.object({}), result: null as unknown as JobSnapshot[] },
  /** Stops a job. A fine-tuning run pauses (with a checkpoint) unless mode is 'cancel'. */
  'jobs.cancel': { params: z.object({ jobId: z.string(), mode: z.enum(['pause', 'cancel']).default('pause') }), result: null as unknown as { cancelled: boolean } },

  'datasets.inspect': {
    params: z.object({ path: z.string().min(1), modelId: id, maxSeqLen: z.number().int().min(16).max(8192).default(512), lossOn: z.enum(['answers', 'all']).default('answers') }),
    result: null as unknown as DatasetInspection,
  },
  /** Saves a dropped file's text into the workbench's datasets folder; returns its path. */
  'datasets.upload': { params: z.object({ name: z.string().min(1).max(200), content: z.string().max(200 * 1024 * 1024) }), result: null as unknown as { path: string } },
  'finetune.estimate': { params: FinetuneRequest, result: null as unknown as FinetuneEstimate },
  /** Starts a run in the background; its job id follows it, its run id appears in 'job' events' result. */
  'finetune.start': { params: FinetuneRequest, result: null as unknown as { jobId: string } },
  'finetune.resume': { params: z.object({ runId: id }), result: null as unknown as { jobId: string } },
  /** Answers of the base model and of a fine-tuned model (folder) to the same prompts, as a job. */
  'finetune.compare': {
    params: z.object({ baseModelId: id, tunedPath: z.string().min(1), prompts: z.array(z.string().min(1)).min(1).max(8), maxNewTokens: z.number().int().min(1).max(512).default(96) }),
    result: null as unknown as { jobId: string },
  },
  'resources.list': { params: z.object({}), result: null as unknown as Resources },

  /** Quantizes a model into a new folder (a job); its result names the report and the new model. */
  'quantize.start': {
    params: z.object({
      modelId: id,
      method: z.enum(['w8a8', 'w8', 'w4']),
      groupSize: z.union([z.literal(32), z.literal(64), z.literal(128)]).optional(),
      keepEmbeddingFp: z.boolean().default(false),
      /** Default: the bundled held-out text. */
      evalText: z.string().min(1).optional(),
    }),
    result: null as unknown as { jobId: string },
  },

  /** Storage, FLOPs and KV-cache costs of every sharing strategy (arithmetic only, instant). */
  'inspect.costs': {
    params: z.object({ preset: z.string().optional(), modelId: id.optional(), repeats: z.number().int().min(1).max(8).default(2), contextTokens: z.number().int().min(1).max(32768).default(512) }),
    result: null as unknown as StrategyCosts[],
  },
  /** A full inspection (a job): costs, and for a model its weight and activation analysis; latency when asked. */
  'inspect.start': {
    params: z.object({
      preset: z.string().optional(),
      modelId: id.optional(),
      strategy: z.enum(['none', 'immediate', 'repeat_all', 'reverse']).optional(),
      repeats: z.number().int().min(1).max(8).optional(),
      probeText: z.string().min(1).optional(),
      latency: z.boolean().default(false),
    }),
    result: null as unknown as { jobId: string },
  },
  /** share: a 2N-block model → an N-block layer-shared one; unshare: a shared model → independent blocks (a job). */
  'convert.start': {
    params: z.object({ modelId: id, operation: z.enum(['share', 'unshare']), strategy: z.enum(['immediate', 'repeat_all', 'reverse']).default('immediate'), pick: z.enum(['every-other', 'average']).default('every-other') }),
    result: null as unknown as { jobId: string },
  },
  'presets.list': { params: z.object({}), result: null as unknown as string[] },

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
    result: null as unknown as { jobId: string },
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
    result: null as unknown as { jobId: string },
  },

  /** A training checkpoint as a model of its own (recorded once), to chat with, fine-tune further or quantize. */
  'checkpoints.asModel': { params: z.object({ checkpointId: id }), result: null as unknown as Model },
  'runs.list': { params: z.object({}), result: null as unknown as Run[] },
  'runs.get': { params: z.object({ id }), result: null as unknown as { run: Run; checkpoints: Checkpoint[]; metrics: string[] } },
  'runs.curve': { params: z.object({ id, name: z.string() }), result: null as unknown as MetricCurve },
  'reports.list': { params: z.object({ modelId: id.optional(), kind: z.string().optional() }), result: null as unknown as Report[] },
} as const;

/** An answer being generated: its job, and the new messages (the question, for send and edit; the empty answer) to show at once. */
export interface AnswerStarted {
  jobId: string;
  userMessageId?: number;
  assistantMessageId: number;
  messages: Message[];
}

export type Method = keyof typeof requests;
export type Params<M extends Method> = z.input<(typeof requests)[M]['params']>;
export type Result<M extends Method> = (typeof requests)[M]['result'];

// ---- events ------------------------------------------------------------------

export type EngineEvent =
  | { type: 'job'; job: JobSnapshot }
  /** A generated piece of an answer; `text` is what to append to the message. */
  | { type: 'token'; jobId: string; chatId: number; messageId: number; text: string; tokens: number; tokensPerSecond: number }
  | { type: 'chat'; chatId: number }
  | { type: 'models' }
  | { type: 'notice'; level: 'info' | 'warning' | 'error'; message: string };

// ---- wire format -------------------------------------------------------------

export type RequestFrame = { id: number; method: string; params: unknown };
export type ResponseFrame = { id: number; result: unknown } | { id: number; error: { message: string; code: string } };
export type EventFrame = { event: EngineEvent };
export type ServerFrame = ResponseFrame | EventFrame;

/** Error codes in responses. */
export const ERROR_CODES = ['bad_request', 'not_found', 'failed', 'engine_restarted'] as const;
