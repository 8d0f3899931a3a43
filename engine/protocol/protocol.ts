// The one protocol between the engine and every UI (web mode over a
// WebSocket, Electron over IPC): requests with typed params and results,
// and events. Params are validated at run time on the engine side; results
// and events are produced by the engine and typed here.
//
// This module is imported by the renderer: it may import zod and *types*
// from the engine, nothing that touches Node.
import { z } from 'zod';
import type { Chat, Checkpoint, Message, MetricCurve, Model, Report, Run, SamplingSettings } from '../store/records';

export type { Chat, Checkpoint, Message, MetricCurve, Model, Report, Run, SamplingSettings };

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
  loadedModel: { modelId: number; name: string } | null;
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
  'chat.send': { params: z.object({ chatId: id, content: z.string().min(1), parentId: id.nullable().optional() }), result: null as unknown as { jobId: string; userMessageId: number; assistantMessageId: number } },
  /** A new answer to the same user message, as a sibling branch of `messageId`. */
  'chat.regenerate': { params: z.object({ chatId: id, messageId: id }), result: null as unknown as { jobId: string; assistantMessageId: number } },
  /** A changed copy of user message `messageId` as a sibling branch, then its answer. */
  'chat.edit': { params: z.object({ chatId: id, messageId: id, content: z.string().min(1) }), result: null as unknown as { jobId: string; userMessageId: number; assistantMessageId: number } },

  'jobs.list': { params: z.object({}), result: null as unknown as JobSnapshot[] },
  'jobs.cancel': { params: z.object({ jobId: z.string() }), result: null as unknown as { cancelled: boolean } },

  'runs.list': { params: z.object({}), result: null as unknown as Run[] },
  'runs.get': { params: z.object({ id }), result: null as unknown as { run: Run; checkpoints: Checkpoint[]; metrics: string[] } },
  'runs.curve': { params: z.object({ id, name: z.string() }), result: null as unknown as MetricCurve },
  'reports.list': { params: z.object({ modelId: id.optional(), kind: z.string().optional() }), result: null as unknown as Report[] },
} as const;

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
