// One answer of the chat window: build the prompt from the thread (system
// prompt + turns, through the chat template), drop the oldest turns when it
// would not fit the context, generate with streaming, persist as it goes.
import type { JobContext } from '../jobs/job';
import type { Store } from '../store/store';
import type { Chat, Message } from '../store/records';
import { encodeChatText, type ChatMessage, type ChatTemplate } from '../chat/template';
import { generate } from '../generate/generate';
import { DEFAULT_CHAT_SAMPLING, type EngineEvent, type Sampling } from '../protocol/protocol';
import type { LoadedChatModel } from './model-host';

export interface PromptBuild {
  ids: number[];
  /** Oldest turns left out to fit the context (0 when all fit). */
  droppedTurns: number;
}

/**
 * Renders the conversation for the model. Turns are dropped from the oldest
 * (the system prompt and the last user turn always stay) until prompt plus
 * answer fit in the context.
 */
export function buildPrompt(loaded: LoadedChatModel, template: ChatTemplate, systemPrompt: string, turns: ChatMessage[], maxNewTokens: number): PromptBuild {
  const { tokenizer, runtime: model } = loaded;
  const budget = model.config.maxPositions - Math.min(maxNewTokens, Math.floor(model.config.maxPositions / 2));
  let dropped = 0;
  for (;;) {
    const kept = turns.slice(dropped);
    const messages: ChatMessage[] = systemPrompt ? [{ role: 'system', content: systemPrompt }, ...kept] : kept;
    const ids = encodeChatText(tokenizer, template.render(messages, true));
    if (ids.length <= budget || kept.length <= 1) {
      if (ids.length > budget) return { ids: ids.slice(ids.length - budget), droppedTurns: dropped };
      return { ids, droppedTurns: dropped };
    }
    dropped += 1;
  }
}

export function chatSampling(chat: Chat): Sampling {
  return { ...DEFAULT_CHAT_SAMPLING, ...(chat.sampling as Partial<Sampling>) };
}

export interface AnswerJob {
  store: Store;
  loaded: LoadedChatModel;
  template: ChatTemplate;
  chat: Chat;
  /** root → the user message being answered */
  thread: Message[];
  answer: Message;
  jobId: string;
  emit: (e: EngineEvent) => void;
  /** performance.now() when the request for this answer arrived: time to first token counts from here. */
  requestedAt: number;
}

/** Generates the answer into `answer`, streaming tokens; keeps what was produced if stopped. */
export async function runAnswer(job: AnswerJob, ctx: JobContext): Promise<{ tokens: number; finish: string }> {
  const { store, loaded, template, chat, thread, answer } = job;
  const sampling = chatSampling(chat);
  const turns: ChatMessage[] = thread.filter((m) => m.role !== 'system').map((m) => ({ role: m.role, content: m.content }));
  const prompt = buildPrompt(loaded, template, chat.systemPrompt, turns, sampling.maxNewTokens);
  const decoder = loaded.tokenizer.streamDecoder();
  const stops = template.stops;
  let text = '';
  let sent = 0;
  let tokens = 0;
  let lastSave = Date.now();
  let stoppedByText = false;
  const controller = new AbortController();
  ctx.signal.addEventListener('abort', () => controller.abort(), { once: true });
  const t0 = Date.now();
  let firstVisibleMs: number | null = null;
  const result = await generate(
    loaded.runtime,
    prompt.ids,
    { ...sampling, seed: sampling.seed ?? undefined, stopAtEos: true, signal: controller.signal },
    (t) => {
      if (t.id === loaded.runtime.config.eosTokenId) return;
      tokens += 1;
      text += decoder.push(t.id);
      // Cut at a stop string; hold back a tail that could be the start of one.
      const cut = template.cutAtStop(text);
      if (cut.stopped) {
        text = cut.text.trimEnd();
        stoppedByText = true;
        controller.abort();
      }
      const holdBack = stoppedByText ? 0 : Math.max(0, ...stops.map((s) => partialSuffix(text, s)));
      const visible = text.length - holdBack;
      if (visible > sent) {
        firstVisibleMs ??= performance.now() - job.requestedAt;
        const secs = Math.max(1e-3, (Date.now() - t0) / 1000);
        job.emit({
          type: 'token',
          jobId: job.jobId,
          chatId: chat.id,
          messageId: answer.id,
          text: text.slice(sent, visible),
          tokens,
          tokensPerSecond: tokens / secs,
        });
        sent = visible;
      }
      if (Date.now() - lastSave > 500) {
        store.messages.update(answer.id, { content: text.slice(0, sent) });
        lastSave = Date.now();
      }
    },
  );
  if (!stoppedByText) text += decoder.flush();
  text = text.trimEnd();
  if (text.length > sent) {
    job.emit({ type: 'token', jobId: job.jobId, chatId: chat.id, messageId: answer.id, text: text.slice(sent), tokens, tokensPerSecond: 0 });
  }
  const decodeSecs = (result.totalMs - result.firstTokenMs) / 1000;
  const userStopped = result.finish === 'cancelled' && !stoppedByText;
  store.messages.update(answer.id, {
    content: text,
    contentTokens: tokens,
    promptTokens: prompt.ids.length,
    timings: {
      // What the user waited for: from the request to the first text shown (prompt building and, for the first answer, loading the model included).
      firstTokenMs: firstVisibleMs ?? performance.now() - job.requestedAt,
      totalMs: result.totalMs,
      tokensPerSecond: tokens > 1 && decodeSecs > 0 ? (tokens - 1) / decodeSecs : 0,
      stopped: userStopped,
      droppedTurns: prompt.droppedTurns,
      finish: stoppedByText ? 'stop' : result.finish,
      model: loaded.name,
      runtime: loaded.runtime.name,
    },
  });
  job.emit({ type: 'chat', chatId: chat.id });
  return { tokens, finish: stoppedByText ? 'stop' : result.finish };
}

/** Length of the longest suffix of `text` that is a proper prefix of `stop`. */
function partialSuffix(text: string, stop: string): number {
  for (let n = Math.min(stop.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(stop.slice(0, n))) return n;
  }
  return 0;
}
