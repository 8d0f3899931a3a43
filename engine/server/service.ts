// The engine service: answers the protocol's requests (validated with zod),
// runs long work as jobs and announces events. Transport-free: web mode
// (web.ts) and the Electron child (ipc.ts) both put a connection in front.
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Store } from '../store/store';
import type { Message, Model, SamplingSettings } from '../store/records';
import { checkpointAsModel } from '../train/run';
import { backendInfo } from '../backend/select';
import { writeFileAtomic } from '../io/atomic';
import { countParams, effectiveDepth, layerSchedule } from '../model/config';
import { ChatTemplate, loadChatTemplate } from '../chat/template';
import { requests, type AnswerStarted, type FinetuneRequest, type Sampling, type ChatView, type EngineEvent, type EngineStatus, type Method, type ModelDetails } from '../protocol/protocol';
import { JobManager } from './jobs';
import { ModelHost } from './model-host';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { hasTokenizer } from '../tokenizer/tokenizer';
import { runAnswer } from './chat-answer';
import { chatToJson, chatToMarkdown } from './chat-export';
import { compareJob, estimateFinetune, inspectDataset, resumeFinetuneJob, startFinetuneJob } from './finetune-handlers';
import { bundledResources } from './resources';
import { runInChild } from './child-jobs';
import type { ConvertJobParams, EvalJobParams, InspectJobParams, QuantizeJobParams } from '../jobs/registry';
import { isRepoId } from '../hub/api';
import { pullModel } from '../hub/pull';
import { PRESET_NAMES, preset } from '../model/presets';
import { costTable } from '../inspect/schedule-costs';
import { CANCEL } from '../train/trainer';
import type { BackendName } from '../backend/select';

export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: 'bad_request' | 'not_found' | 'failed' = 'failed',
  ) {
    super(message);
  }
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? folderBytes(p) : fs.statSync(p).size;
  }
  return n;
}

/** Sampling as stored: a null seed (a new one per answer) is simply absent. */
function storedSampling(s: Partial<Sampling> | SamplingSettings): SamplingSettings {
  const { seed, ...rest } = s;
  return seed === null || seed === undefined ? rest : { ...rest, seed };
}

type Handler = (params: never) => unknown | Promise<unknown>;

export class EngineService {
  readonly events = new EventEmitter();
  readonly jobs: JobManager;
  private readonly host = new ModelHost();
  private readonly handlers: Record<Method, Handler>;

  constructor(
    readonly store: Store,
    private readonly version: string,
  ) {
    this.jobs = new JobManager((job) => this.emit({ type: 'job', job }));
    this.handlers = {
      'engine.status': () => this.status(),
      'models.list': () => this.store.models.list(),
      'models.get': ({ id }: { id: number }) => this.modelDetails(id),
      'models.import': (p: { path: string; name?: string }) => this.importModel(p.path, p.name),
      'models.remove': ({ id }: { id: number }) => {
        if (this.host.loaded?.modelId === id) this.host.unload();
        this.store.models.remove(id);
        this.emit({ type: 'models' });
        return { removed: true };
      },
      'chats.list': ({ search }: { search?: string }) => this.store.chats.list({ search }),
      'chats.create': (p: z.infer<(typeof requests)['chats.create']['params']>) => {
        const model = this.store.models.get(p.modelId);
        const chat = this.store.chats.create({
          title: p.title ?? 'New chat',
          modelId: model.id,
          systemPrompt: p.systemPrompt ?? '',
          sampling: storedSampling(p.sampling ?? {}),
        });
        this.emit({ type: 'chat', chatId: chat.id });
        return this.chatView(chat.id);
      },
      'chats.get': ({ id, leafId }: { id: number; leafId?: number }) => this.chatView(id, leafId),
      'chats.update': (p: z.infer<(typeof requests)['chats.update']['params']>) => {
        const current = this.store.chats.get(p.id);
        const { id, ...patch } = p;
        this.store.chats.update(id, { ...patch, sampling: patch.sampling ? storedSampling({ ...current.sampling, ...patch.sampling }) : undefined });
        this.emit({ type: 'chat', chatId: id });
        return this.chatView(id);
      },
      'chats.remove': ({ id }: { id: number }) => {
        this.store.chats.remove(id);
        this.emit({ type: 'chat', chatId: id });
        return { removed: true };
      },
      'chats.export': (p: { id: number; leafId?: number; format: 'markdown' | 'json' }) => {
        const view = this.chatView(p.id, p.leafId);
        const thread = view.thread.map((mid) => view.messages.find((m) => m.id === mid)!);
        const safe = view.chat.title.replace(/[^\w\- ]+/g, '').trim() || `chat-${view.chat.id}`;
        return p.format === 'json'
          ? { filename: `${safe}.json`, content: chatToJson(view.chat, thread, view.template) }
          : { filename: `${safe}.md`, content: chatToMarkdown(view.chat, thread, this.modelName(view.chat.modelId)) };
      },
      'chat.send': (p: { chatId: number; content: string; parentId?: number | null }) => {
        const requestedAt = performance.now();
        const chat = this.store.chats.get(p.chatId);
        const parentId = p.parentId !== undefined ? p.parentId : this.currentLeaf(chat.id);
        const user = this.store.messages.add({ chatId: chat.id, parentId, role: 'user', content: p.content });
        if (chat.title === 'New chat') this.store.chats.update(chat.id, { title: p.content.slice(0, 60) });
        const started = this.startAnswer(chat.id, user, requestedAt);
        return { ...started, userMessageId: user.id, messages: [user, ...started.messages] };
      },
      'chat.regenerate': ({ chatId, messageId }: { chatId: number; messageId: number }) => {
        const old = this.store.messages.get(messageId);
        if (old.chatId !== chatId || old.role !== 'assistant' || old.parentId === null) {
          throw new RequestError(`message ${messageId} is not an answer in chat ${chatId}`, 'bad_request');
        }
        return this.startAnswer(chatId, this.store.messages.get(old.parentId));
      },
      'chat.edit': ({ chatId, messageId, content }: { chatId: number; messageId: number; content: string }) => {
        const old = this.store.messages.get(messageId);
        if (old.chatId !== chatId || old.role !== 'user') throw new RequestError(`message ${messageId} is not a question in chat ${chatId}`, 'bad_request');
        const user = this.store.messages.add({ chatId, parentId: old.parentId, role: 'user', content });
        const started = this.startAnswer(chatId, user);
        return { ...started, userMessageId: user.id, messages: [user, ...started.messages] };
      },
      'jobs.list': () => this.jobs.list(),
      'jobs.cancel': ({ jobId, mode }: { jobId: string; mode: 'pause' | 'cancel' }) => ({ cancelled: this.jobs.cancel(jobId, mode === 'cancel' ? CANCEL : undefined) }),
      'datasets.inspect': (p: { path: string; modelId: number; maxSeqLen: number; lossOn: 'answers' | 'all' }) =>
        inspectDataset(this.store.models.get(p.modelId).path, p.path, p.maxSeqLen, p.lossOn),
      'datasets.upload': ({ name, content }: { name: string; content: string }) => {
        const safe = path.basename(name).replace(/[^\w.\- ]+/g, '_');
        const file = path.join(this.store.layout.datasets, `${Date.now()}-${safe}`);
        writeFileAtomic(file, content);
        return { path: file };
      },
      'finetune.estimate': (p: FinetuneRequest) => estimateFinetune(this, p),
      'finetune.start': (p: FinetuneRequest) => startFinetuneJob(this, p),
      'finetune.resume': ({ runId }: { runId: number }) => resumeFinetuneJob(this, runId),
      'finetune.compare': (p: { baseModelId: number; tunedPath: string; prompts: string[]; maxNewTokens: number }) => compareJob(this, p),
      'resources.list': () => bundledResources(),
      'presets.list': () => PRESET_NAMES,
      'inspect.costs': (p: { preset?: string; modelId?: number; repeats: number; contextTokens: number }) => {
        const config = p.preset ? preset(p.preset) : readModelFolder(this.architectureDir(this.requireModelId(p.modelId))).config;
        return costTable(config, p.repeats, Math.min(p.contextTokens, config.maxPositions));
      },
      'inspect.start': (p: { preset?: string; modelId?: number; strategy?: InspectJobParams['strategy']; repeats?: number; probeText?: string; latency: boolean }) => {
        const target = p.preset ?? this.architectureDir(this.requireModelId(p.modelId));
        if (p.preset) preset(p.preset); // validates the name
        const params: InspectJobParams = { target, strategy: p.strategy, repeats: p.repeats, probeText: p.probeText, latency: p.latency };
        const jobId = this.jobs.start('inspect', `inspecting ${p.preset ?? path.basename(target)}${p.latency ? ' (with latency)' : ''}`, (ctx) => runInChild('inspect', params, this.childOptions(), ctx), 'train');
        return { jobId };
      },
      'convert.start': (p: { modelId: number; operation: 'share' | 'unshare'; strategy: 'immediate' | 'repeat_all' | 'reverse'; pick: 'every-other' | 'average' }) => {
        const model = this.store.models.get(p.modelId);
        const suffix = p.operation === 'share' ? `shared-${p.strategy}-${p.pick}` : 'unshared';
        const params: ConvertJobParams = {
          modelDir: model.path,
          outDir: path.join(this.store.layout.models, `${path.basename(model.path)}-${suffix}-${Date.now().toString(36)}`),
          conversion: p.operation === 'share' ? { operation: 'share', strategy: p.strategy, pick: p.pick } : { operation: 'unshare' },
          evalText: bundledResources().evalTexts[0]?.path,
        };
        const jobId = this.jobs.start('convert', `${p.operation === 'share' ? 'sharing' : 'unsharing'} ${model.name}`, (ctx) => runInChild('convert', params, this.childOptions(), ctx), 'train');
        return { jobId };
      },
      'quantize.start': (p: { modelId: number; method: string; groupSize?: number; keepEmbeddingFp: boolean; evalText?: string }) => {
        const model = this.store.models.get(p.modelId);
        const evalText = p.evalText ?? bundledResources().evalTexts[0]?.path;
        if (!evalText) throw new RequestError('no evaluation text: pick one (none is bundled)', 'bad_request');
        const suffix = `${p.method}${p.method === 'w4' && p.groupSize ? `-g${p.groupSize}` : ''}${p.keepEmbeddingFp ? '-fpemb' : ''}`;
        const outDir = path.join(this.store.layout.models, `${path.basename(model.path)}-${suffix}`);
        const params: QuantizeJobParams = { modelDir: model.path, outDir, method: p.method, groupSize: p.groupSize, keepEmbeddingFp: p.keepEmbeddingFp, evalText };
        const jobId = this.jobs.start('quantize', `quantizing ${model.name} (${p.method})`, (ctx) => runInChild('quantize', params, this.childOptions(), ctx), 'train');
        return { jobId };
      },
      'hub.pull': (p: { repo: string; revision?: string; token?: string }) => {
        if (!isRepoId(p.repo)) throw new RequestError(`"${p.repo}" is not a Hub model id (owner/name, e.g. facebook/MobileLLM-125M)`, 'bad_request');
        const params = { store: this.store, repo: p.repo, revision: p.revision, token: p.token };
        const title = `downloading ${p.repo}${p.revision ? `@${p.revision}` : ''}`;
        const jobId = this.jobs.start('pull', title, async (ctx) => {
          const r = await pullModel(params, ctx);
          this.emit({ type: 'models' });
          return { modelId: r.model.id, name: r.model.name, bytes: r.bytes, commit: r.commit, alreadyRecorded: r.alreadyRecorded };
        }, 'download');
        return { jobId };
      },
      'eval.start': (p: { modelId?: number; checkpointId?: number; text?: string; tasks?: string; limit?: number }) => {
        let target: EvalJobParams['target'];
        let name: string;
        if (p.checkpointId !== undefined) {
          const c = this.store.checkpoints.get(p.checkpointId);
          target = { dir: c.path, modelId: null, checkpointId: c.id, runId: c.runId };
          name = `run ${c.runId} step ${c.step}`;
        } else {
          const m = this.store.models.get(p.modelId!);
          target = { dir: m.path, modelId: m.id, checkpointId: null, runId: null };
          name = m.name;
        }
        const text = p.tasks === undefined ? (p.text ?? bundledResources().evalTexts[0]?.path) : undefined;
        if (p.tasks === undefined && !text) throw new RequestError('no evaluation text: pick one (none is bundled)', 'bad_request');
        for (const f of [text, p.tasks]) if (f !== undefined && !fs.existsSync(f)) throw new RequestError(`${f}: not found`, 'bad_request');
        const params: EvalJobParams = { target, text, tasks: p.tasks, limit: p.limit };
        const jobId = this.jobs.start('eval', `evaluating ${name} (${p.tasks ? 'multiple choice' : 'perplexity'})`, (ctx) => runInChild('eval', params, this.childOptions(), ctx), 'train');
        return { jobId };
      },
      'checkpoints.asModel': ({ checkpointId }: { checkpointId: number }) => this.checkpointModel(checkpointId),
      'runs.list': () => this.store.runs.list(),
      'runs.get': ({ id }: { id: number }) => ({
        run: this.store.runs.get(id),
        checkpoints: this.store.checkpoints.list(id),
        metrics: this.store.metrics.names(id),
      }),
      'runs.curve': ({ id, name }: { id: number; name: string }) => this.store.metrics.curve(id, name),
      'reports.list': (p: { modelId?: number; kind?: string }) => this.store.reports.list(p as never),
    };
  }

  private requireModelId(id: number | undefined): number {
    if (id === undefined) throw new RequestError('give a preset or a modelId', 'bad_request');
    return id;
  }

  /** A checkpoint as a model to chat with: recorded once, as "<base>-run<R>-step<S>". */
  private async checkpointModel(checkpointId: number): Promise<Model> {
    const c = this.store.checkpoints.get(checkpointId);
    if (c.kind === 'quantized') throw new RequestError(`checkpoint ${c.id} is not a training checkpoint`, 'bad_request');
    if (!fs.existsSync(c.path)) throw new RequestError(`checkpoint ${c.id}: ${c.path} is gone (cleaned up?)`, 'not_found');
    const suffix = `-run${c.runId}-step${c.step}`;
    const known = this.store.models.list().find((m) => m.runId === c.runId && m.name.endsWith(suffix));
    if (known) return known;
    const model = await checkpointAsModel(this.store, this.store.runs.get(c.runId), c.path, c.kind, suffix);
    this.emit({ type: 'models' });
    return model;
  }

  /** The folder with a model's architecture (its base model's, for an adapter). */
  private architectureDir(modelId: number): string {
    return readModelFolder(this.store.models.get(modelId).path).modelDir;
  }

  /** How child-process jobs find the store and backend of this engine. */
  childOptions(): { home: string; backend?: BackendName } {
    return { home: this.store.layout.root, backend: backendInfo().name };
  }

  emit(event: EngineEvent): void {
    this.events.emit('event', event);
  }

  /** Validates and answers one request. Throws RequestError for bad input. */
  async handle(method: string, params: unknown): Promise<unknown> {
    const spec = (requests as Record<string, { params: z.ZodType }>)[method];
    if (!spec) throw new RequestError(`unknown method "${method}"`, 'bad_request');
    const parsed = spec.params.safeParse(params ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new RequestError(`${method}: invalid "${issue.path.join('.') || 'params'}": ${issue.message}`, 'bad_request');
    }
    try {
      return await this.handlers[method as Method](parsed.data as never);
    } catch (err) {
      if (err instanceof RequestError) throw err;
      const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new RequestError(msg, /not found|no (model|chat|message|run)/i.test(msg) ? 'not_found' : 'failed');
    }
  }

  status(): EngineStatus {
    const b = backendInfo();
    const loaded = this.host.loaded;
    return {
      version: this.version,
      backend: b.name,
      threads: b.threads,
      rssBytes: process.memoryUsage().rss,
      tensorBytes: tf.memory().numBytes,
      loadedModel: loaded ? { modelId: loaded.modelId, name: loaded.name, runtime: loaded.runtime.describe() } : null,
      home: this.store.layout.root,
    };
  }

  private modelName(id: number | null): string {
    if (id === null) return 'unknown model';
    try {
      return this.store.models.get(id).name;
    } catch {
      return `model ${id}`;
    }
  }

  importModel(dir: string, name?: string) {
    const abs = path.resolve(dir);
    let folder, checked;
    try {
      folder = readModelFolder(abs);
      checked = checkModelFolder(folder);
    } catch (e) {
      throw new RequestError(`cannot import: ${(e as Error).message.split('\n')[0]}`, 'bad_request');
    }
    const model = this.store.models.add({
      name: name ?? path.basename(abs),
      source: 'imported',
      format: checked.format,
      path: abs,
      config: folder.configJson ?? undefined,
      paramCount: countParams(folder.config).total,
      bytes: folderBytes(abs),
    });
    this.emit({ type: 'models' });
    return model;
  }

  modelDetails(id: number): ModelDetails {
    const model = this.store.models.get(id);
    const bytesOnDisk = fs.existsSync(model.path) ? folderBytes(model.path) : 0;
    const none = { config: null, params: null, effectiveDepth: null, schedule: null, chatTemplate: null };
    try {
      // An adapter folder describes its base model's architecture.
      const folder = readModelFolder(model.path);
      checkModelFolder(folder);
      const { config, tokenizerDir } = folder;
      const c = countParams(config);
      const tokenizer = hasTokenizer(tokenizerDir);
      return {
        model,
        config: config as unknown as Record<string, unknown>,
        params: { total: c.total, embedding: c.embedding, nonEmbedding: c.nonEmbedding, perBlock: c.perBlock },
        effectiveDepth: effectiveDepth(config),
        schedule: layerSchedule(config),
        bytesOnDisk,
        hasTokenizer: tokenizer,
        chatTemplate: loadChatTemplate(tokenizerDir).name,
        problem: tokenizer ? null : 'no tokenizer.model or tokenizer.json: it can be scored by ids but not chatted with',
      };
    } catch (e) {
      return { model, ...none, bytesOnDisk, hasTokenizer: false, problem: (e as Error).message.split('\n')[0] };
    }
  }

  /** The template a chat's prompts are built with: its own, else its model's. */
  private templateFor(chat: { chatTemplate: string | null; modelId: number | null }, model?: { template: ChatTemplate }): ChatTemplate {
    if (chat.chatTemplate) return new ChatTemplate(chat.chatTemplate, model?.template.bosToken ?? '<s>', model?.template.eosToken ?? '</s>', 'custom');
    if (model) return model.template;
    if (chat.modelId === null) throw new RequestError('this chat has no model', 'bad_request');
    return loadChatTemplate(readModelFolder(this.store.models.get(chat.modelId).path).tokenizerDir);
  }

  /** Every message of a chat, parents before children. */
  private allMessages(chatId: number): Message[] {
    const out: Message[] = [];
    const queue = this.store.messages.roots(chatId);
    while (queue.length) {
      const m = queue.shift()!;
      out.push(m);
      queue.push(...this.store.messages.children(m.id));
    }
    return out;
  }

  /** The last message of the branch currently shown (newest choices). */
  private currentLeaf(chatId: number): number | null {
    const roots = this.store.messages.roots(chatId);
    if (!roots.length) return null;
    return this.store.messages.newestLeaf(roots[roots.length - 1].id).id;
  }

  chatView(id: number, leafId?: number): ChatView {
    const chat = this.store.chats.get(id);
    const messages = this.allMessages(id);
    const leaf = leafId ?? this.currentLeaf(id) ?? undefined;
    const thread = leaf === undefined ? [] : this.store.messages.thread(id, leaf).map((m) => m.id);
    let template = { name: 'none', source: '' };
    try {
      const t = this.templateFor(chat);
      template = { name: t.name, source: t.source };
    } catch {
      // no model, or its template is broken: the chat shows no template
    }
    return { chat, messages, thread, template };
  }

  /** Starts the answer to `user`; `requestedAt` is when the request came (time to first token counts from it). */
  private startAnswer(chatId: number, user: Message, requestedAt = performance.now()): AnswerStarted {
    const chat = this.store.chats.get(chatId);
    if (chat.modelId === null) throw new RequestError('pick a model for this chat first', 'bad_request');
    const modelRow = this.store.models.get(chat.modelId);
    const answer = this.store.messages.add({ chatId, parentId: user.id, role: 'assistant', content: '' });
    this.emit({ type: 'chat', chatId });
    const thread = this.store.messages.thread(chatId, user.id);
    let jobId = '';
    jobId = this.jobs.start('generate', `answer in "${chat.title}"`, async (ctx) => {
      const loaded = await this.host.use(modelRow.id, modelRow.name, modelRow.path);
      const template = this.templateFor(chat, loaded);
      return runAnswer({ store: this.store, loaded, template, chat, thread, answer, jobId, emit: (e) => this.emit(e), requestedAt }, ctx);
    });
    return { jobId, assistantMessageId: answer.id, messages: [answer] };
  }

  async close(): Promise<void> {
    this.jobs.cancelAll();
    await this.jobs.idle();
    this.host.unload();
    this.store.close();
  }
}
