// The engine service: answers the protocol's requests (validated with zod),
// runs long work as jobs and announces events. Transport-free: web mode
// (web.ts) and the Electron child (ipc.ts) both put a connection in front.
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import * as tf from '@tensorflow/tfjs';
import type { Store } from '../store/store';
import type { Message, Model, SamplingSettings } from '../store/records';
import { checkpointAsModel } from '../train/run';
import { backendInfo } from '../backend/select';
import { countParams, effectiveDepth, layerSchedule } from '../model/config';
import { ChatTemplate, loadChatTemplate } from '../chat/template';
import {
  requests,
  type AnswerStarted,
  type Sampling,
  type ChatView,
  type EngineEvent,
  type EngineStatus,
  type ErrorCode,
  type Handler,
  type Handlers,
  type JobSnapshot,
  type Method,
  type ModelDetails,
  type RequestFrame,
  type ResponseFrame,
  type Result,
  type ValidParams,
} from '../protocol/protocol';
import { errorKind, KindedError, oneLine, type ErrorKind } from '../errors';
import { JobManager } from './jobs';
import { DatasetUploads } from './uploads';
import { ModelHost } from './model-host';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { hasTokenizer } from '../tokenizer/tokenizer';
import { runAnswer } from './chat-answer';
import { chatToJson, chatToMarkdown } from './chat-export';
import { compareJob, estimateFinetune, inspectDataset, resumeFinetuneJob, startFinetuneJob } from './finetune-handlers';
import { bundledResources } from './resources';
import { evalTargetContext, trainedContext } from './trained-context';
import { cancelRun, removeRun, runSummaries } from './run-handlers';
import { labList, labReport, labResult, startLab } from './lab-handlers';
import { runInChild } from './child-jobs';
import { modelWithSameFolder } from './same-folder';
import { checkExportTarget } from '../export/target';
import { importJob } from '../job/import';
import type { ChildParams } from '../jobs/registry';
import type { EvalTarget } from '../eval/record';
import { isRepoId } from '../hub/api';
import { pullModel } from '../hub/pull';
import { PRESET_NAMES, preset } from '../model/presets';
import { costTable } from '../inspect/schedule-costs';
import { CANCEL } from '../train/trainer';
import type { BackendName } from '../backend/select';

/** A request the service refused or failed, as the protocol's error answer says it. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode = 'failed',
  ) {
    super(message);
  }
}

/** Jobs that may add a model to the store (a pull announces its own): when one ends, model lists reload. */
const MODEL_MAKING_JOBS: ReadonlySet<JobSnapshot['kind']> = new Set(['finetune', 'quantize', 'convert', 'merge']);

const CODE_OF_KIND: Record<ErrorKind, ErrorCode> = { not_found: 'not_found', bad_input: 'bad_request', conflict: 'conflict', busy: 'busy' };

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

export class EngineService {
  readonly events = new EventEmitter();
  readonly jobs: JobManager;
  private readonly host = new ModelHost();
  private readonly handlers: Handlers;
  private readonly uploads: DatasetUploads;

  constructor(
    readonly store: Store,
    private readonly version: string,
  ) {
    this.jobs = new JobManager((job) => {
      this.emit({ type: 'job', job });
      if (job.state !== 'running' && MODEL_MAKING_JOBS.has(job.kind)) this.emit({ type: 'models' });
    });
    this.uploads = new DatasetUploads(store.layout.datasets);
    this.handlers = {
      'engine.status': () => this.status(),
      'models.list': () => this.store.models.list(),
      'models.get': ({ id }) => this.modelDetails(id),
      'models.import': (p) => this.importModel(p.path, p.name),
      'models.merge': ({ id }) => {
        const model = this.store.models.get(id);
        if (model.format !== 'peft-lora') throw new KindedError('bad_input', `${model.name} is not a LoRA adapter: there is nothing to merge`);
        const params: ChildParams<'merge'> = { adapterModelId: model.id, adapterDir: model.path, name: `${model.name}-merged` };
        const jobId = this.jobs.start(
          'merge',
          `merging ${model.name} into its base model`,
          (ctx) => runInChild('merge', params, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'models.remove': ({ id }) => {
        if (this.host.loaded?.modelId === id) this.host.unload();
        this.store.models.remove(id);
        this.emit({ type: 'models' });
        return { removed: true };
      },
      'chats.list': ({ search }) => this.store.chats.list({ search }),
      'chats.create': (p) => {
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
      'chats.get': ({ id, leafId }) => this.chatView(id, leafId),
      'chats.update': (p) => {
        const current = this.store.chats.get(p.id);
        const { id, ...patch } = p;
        this.store.chats.update(id, { ...patch, sampling: patch.sampling ? storedSampling({ ...current.sampling, ...patch.sampling }) : undefined });
        this.emit({ type: 'chat', chatId: id });
        return this.chatView(id);
      },
      'chats.remove': ({ id }) => {
        this.store.chats.remove(id);
        this.emit({ type: 'chat', chatId: id });
        return { removed: true };
      },
      'chats.export': (p) => {
        const view = this.chatView(p.id, p.leafId);
        const thread = view.thread.map((mid) => view.messages.find((m) => m.id === mid)!);
        const safe = view.chat.title.replace(/[^\w\- ]+/g, '').trim() || `chat-${view.chat.id}`;
        return p.format === 'json'
          ? { filename: `${safe}.json`, content: chatToJson(view.chat, thread, view.template) }
          : { filename: `${safe}.md`, content: chatToMarkdown(view.chat, thread, this.modelName(view.chat.modelId)) };
      },
      'chat.send': (p) => {
        const requestedAt = performance.now();
        const chat = this.store.chats.get(p.chatId);
        const parentId = p.parentId !== undefined ? p.parentId : this.currentLeaf(chat.id);
        const user = this.store.messages.add({ chatId: chat.id, parentId, role: 'user', content: p.content });
        if (chat.title === 'New chat') this.store.chats.update(chat.id, { title: p.content.slice(0, 60) });
        const started = this.startAnswer(chat.id, user, requestedAt);
        return { ...started, userMessageId: user.id, messages: [user, ...started.messages] };
      },
      'chat.regenerate': ({ chatId, messageId }) => {
        const old = this.store.messages.get(messageId);
        if (old.chatId !== chatId || old.role !== 'assistant' || old.parentId === null) {
          throw new KindedError('bad_input', `message ${messageId} is not an answer in chat ${chatId}`);
        }
        return this.startAnswer(chatId, this.store.messages.get(old.parentId));
      },
      'chat.edit': ({ chatId, messageId, content }) => {
        const old = this.store.messages.get(messageId);
        if (old.chatId !== chatId || old.role !== 'user') throw new KindedError('bad_input', `message ${messageId} is not a question in chat ${chatId}`);
        const user = this.store.messages.add({ chatId, parentId: old.parentId, role: 'user', content });
        const started = this.startAnswer(chatId, user);
        return { ...started, userMessageId: user.id, messages: [user, ...started.messages] };
      },
      'jobs.list': () => this.jobs.list(),
      'jobs.cancel': ({ jobId, mode }) => ({ cancelled: this.jobs.cancel(jobId, mode === 'cancel' ? CANCEL : undefined) }),
      'datasets.inspect': (p) => inspectDataset(this.store.models.get(p.modelId).path, p.path, p.maxSeqLen, p.lossOn),
      'datasets.upload': (p) => this.uploads.receive(p),
      'finetune.estimate': (p) => estimateFinetune(this, p),
      'finetune.start': (p) => startFinetuneJob(this, p),
      'finetune.resume': ({ runId }) => resumeFinetuneJob(this, runId),
      'finetune.compare': (p) => compareJob(this, p),
      'resources.list': () => bundledResources(),
      'presets.list': () => [...PRESET_NAMES],
      'inspect.costs': (p) => {
        const config = p.preset ? preset(p.preset) : readModelFolder(this.store.models.get(this.requireModelId(p.modelId)).path).config; // an adapter's: its base's
        return costTable(config, p.repeats, Math.min(p.contextTokens, config.maxPositions));
      },
      'inspect.start': (p) => {
        // A model's own folder, as `mlw inspect` is given it: an adapter is analysed merged into its base.
        const target = p.preset ?? this.store.models.get(this.requireModelId(p.modelId)).path;
        if (p.preset) preset(p.preset); // validates the name
        const params = { target, strategy: p.strategy, repeats: p.repeats, probeText: p.probeText, latency: p.latency };
        const jobId = this.jobs.start(
          'inspect',
          `inspecting ${p.preset ?? path.basename(target)}${p.latency ? ' (with latency)' : ''}`,
          (ctx) => runInChild('inspect', params, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'convert.start': (p) => {
        const model = this.store.models.get(p.modelId);
        const suffix = p.operation === 'share' ? `shared-${p.strategy}-${p.pick}` : 'unshared';
        const params: ChildParams<'convert'> = {
          modelDir: model.path,
          outDir: path.join(this.store.layout.models, `${path.basename(model.path)}-${suffix}-${Date.now().toString(36)}`),
          conversion: p.operation === 'share' ? { operation: 'share', strategy: p.strategy, pick: p.pick } : { operation: 'unshare' },
          evalText: bundledResources().evalTexts[0]?.path,
        };
        const jobId = this.jobs.start(
          'convert',
          `${p.operation === 'share' ? 'sharing' : 'unsharing'} ${model.name}`,
          (ctx) => runInChild('convert', params, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'export.start': (p) => {
        const model = this.store.models.get(p.modelId);
        const o = p.options;
        const variant = o.format === 'gguf' ? `-${o.type}` : o.format === 'hf' && o.unroll ? '-unrolled' : '';
        const outDir = p.outDir
          ? path.resolve(p.outDir)
          : path.join(this.store.layout.exports, `${path.basename(model.path)}-${o.format}${variant}-${Date.now().toString(36)}`);
        try {
          checkExportTarget(outDir);
        } catch (e) {
          throw new KindedError('bad_input', (e as Error).message);
        }
        const jobId = this.jobs.start(
          'export',
          `exporting ${model.name} (${o.format}${variant})`,
          (ctx) => runInChild('export', { modelDir: model.path, outDir, options: o }, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'quantize.start': (p) => {
        const model = this.store.models.get(p.modelId);
        const evalText = p.evalText ?? bundledResources().evalTexts[0]?.path;
        if (!evalText) throw new KindedError('bad_input', 'no evaluation text: pick one (none is bundled)');
        const suffix = `${p.method}${p.method === 'w4' && p.groupSize ? `-g${p.groupSize}` : ''}${p.keepEmbeddingFp ? '-fpemb' : ''}`;
        const outDir = path.join(this.store.layout.models, `${path.basename(model.path)}-${suffix}`);
        const params = { modelDir: model.path, outDir, method: p.method, groupSize: p.groupSize, keepEmbeddingFp: p.keepEmbeddingFp, evalText };
        const jobId = this.jobs.start(
          'quantize',
          `quantizing ${model.name} (${p.method})`,
          (ctx) => runInChild('quantize', params, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'hub.pull': (p) => {
        if (!isRepoId(p.repo)) throw new KindedError('bad_input', `"${p.repo}" is not a Hub model id (owner/name, e.g. facebook/MobileLLM-125M)`);
        const params = { store: this.store, repo: p.repo, revision: p.revision, token: p.token };
        const title = `downloading ${p.repo}${p.revision ? `@${p.revision}` : ''}`;
        const jobId = this.jobs.start(
          'pull',
          title,
          async (ctx) => {
            const r = await pullModel(params, ctx);
            this.emit({ type: 'models' });
            return { modelId: r.model.id, name: r.model.name, bytes: r.bytes, commit: r.commit, alreadyRecorded: r.alreadyRecorded };
          },
          'download',
        );
        return { jobId };
      },
      'eval.start': (p) => {
        let target: EvalTarget;
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
        if (p.tasks === undefined && !text) throw new KindedError('bad_input', 'no evaluation text: pick one (none is bundled)');
        for (const f of [text, p.tasks]) if (f !== undefined && !fs.existsSync(f)) throw new KindedError('bad_input', `${f}: not found`);
        const params = {
          target,
          text,
          tasks: p.tasks,
          limit: p.limit,
          window: text !== undefined ? (evalTargetContext(this.store, target) ?? undefined) : undefined,
        };
        const jobId = this.jobs.start(
          'eval',
          `evaluating ${name} (${p.tasks ? 'multiple choice' : 'perplexity'})`,
          (ctx) => runInChild('eval', params, this.childOptions(), ctx),
          'train',
        );
        return { jobId };
      },
      'checkpoints.asModel': ({ checkpointId }) => this.checkpointModel(checkpointId),
      'runs.list': () => this.store.runs.list(),
      'runs.get': ({ id }) => ({
        run: this.store.runs.get(id),
        checkpoints: this.store.checkpoints.list(id),
        metrics: this.store.metrics.names(id),
      }),
      'runs.curve': ({ id, name }) => this.store.metrics.curve(id, name),
      'runs.summaries': () => runSummaries(this),
      'runs.rename': ({ id, name }) => this.store.runs.rename(id, name),
      'runs.cancel': ({ id }) => cancelRun(this, id),
      'runs.remove': ({ id }) => removeRun(this, id),
      'job.export': ({ modelId, outDir, ...config }) => {
        const model = this.store.models.get(modelId);
        const dir = outDir ? path.resolve(outDir) : path.join(this.store.layout.exports, `job-${path.basename(model.path)}-${Date.now().toString(36)}`);
        // Its own lane: writing a job folder need not wait for a local training run (it runs in a child, beside it).
        const jobId = this.jobs.start(
          'job-export',
          `writing a GPU job for ${model.name}`,
          (ctx) => runInChild('job-export', { config: { ...config, model: model.path }, outDir: dir }, this.childOptions(), ctx),
          'job-export',
        );
        return { jobId };
      },
      'job.import': ({ dir }) => importJob(this.store, dir),
      'lab.list': () => labList(this),
      'lab.start': (p) => startLab(this, p),
      'lab.result': (p) => labResult(this, p),
      'lab.report': (p) => labReport(this, p),
      'reports.list': (p) => this.store.reports.list(p),
    };
  }

  private requireModelId(id: number | undefined): number {
    if (id === undefined) throw new KindedError('bad_input', 'give a preset or a modelId');
    return id;
  }

  /** A checkpoint as a model to chat with: recorded once, as "<base>-run<R>-step<S>". */
  private async checkpointModel(checkpointId: number): Promise<Model> {
    const c = this.store.checkpoints.get(checkpointId);
    if (c.kind === 'quantized') throw new KindedError('bad_input', `checkpoint ${c.id} is not a training checkpoint`);
    if (!fs.existsSync(c.path)) throw new KindedError('not_found', `checkpoint ${c.id}: ${c.path} is gone (cleaned up?)`);
    const suffix = `-run${c.runId}-step${c.step}`;
    const known = this.store.models.list().find((m) => m.runId === c.runId && m.name.endsWith(suffix));
    if (known) return known;
    const model = await checkpointAsModel(this.store, this.store.runs.get(c.runId), c.path, c.kind, suffix);
    this.emit({ type: 'models' });
    return model;
  }

  /** How child-process jobs find the store and backend of this engine. */
  childOptions(): { home: string; backend?: BackendName } {
    return { home: this.store.layout.root, backend: backendInfo().name };
  }

  emit(event: EngineEvent): void {
    this.events.emit('event', event);
  }

  /** The answer to one request frame: its result, or the error it failed with. */
  async respond(frame: RequestFrame): Promise<ResponseFrame> {
    try {
      return { id: frame.id, result: await this.handle(frame.method, frame.params) };
    } catch (err) {
      const e = err instanceof RequestError ? err : new RequestError(String(err));
      return { id: frame.id, error: { message: oneLine(e), code: e.code } };
    }
  }

  /** Validates and answers one request; throws RequestError with the code of the failure's kind. */
  async handle(method: string, params: unknown): Promise<unknown> {
    if (!Object.hasOwn(requests, method)) throw new RequestError(`unknown method "${method}"`, 'bad_request');
    try {
      return await this.answer(method as Method, params);
    } catch (err) {
      if (err instanceof RequestError) throw err;
      const kind = errorKind(err);
      throw new RequestError(err instanceof Error ? err.message.split('\n')[0] : String(err), kind ? CODE_OF_KIND[kind] : 'failed');
    }
  }

  private answer<M extends Method>(method: M, params: unknown): Result<M> | Promise<Result<M>> {
    const parsed = requests[method].params.safeParse(params ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new RequestError(`${method}: invalid "${issue.path.join('.') || 'params'}": ${issue.message}`, 'bad_request');
    }
    const handler: Handler<M> = this.handlers[method];
    // Parsed by M's own schema (TypeScript sees the union of every method's params here).
    return handler(parsed.data as ValidParams<M>);
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

  async importModel(dir: string, name?: string) {
    let abs = path.resolve(dir);
    // A llama.cpp file becomes a model folder in the home first (in a child: a large file takes a while).
    if (abs.endsWith('.gguf') && fs.statSync(abs, { throwIfNoEntry: false })?.isFile()) {
      const outDir = path.join(this.store.layout.models, `${path.basename(abs, '.gguf')}-gguf`);
      if (!fs.existsSync(outDir)) {
        const ctx = { signal: new AbortController().signal, progress: () => {} };
        try {
          await runInChild('gguf-import', { file: abs, outDir }, this.childOptions(), ctx);
        } catch (e) {
          throw new KindedError('bad_input', `cannot import: ${oneLine((e as Error).message)}`);
        }
      }
      name ??= path.basename(abs);
      abs = outDir;
    }
    let folder, checked;
    try {
      folder = readModelFolder(abs);
      checked = checkModelFolder(folder);
    } catch (e) {
      throw new KindedError('bad_input', `cannot import: ${(e as Error).message.split('\n')[0]}`);
    }
    const known = await modelWithSameFolder(this.store.models.list(), abs);
    if (known) {
      // Importing a folder again is also how one says its files changed in place: the next chat reads them anew.
      if (this.host.loaded?.modelId === known.id) this.host.unload();
      return { ...known, alreadyImported: true };
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
    return { ...model, alreadyImported: false };
  }

  modelDetails(id: number): ModelDetails {
    const model = this.store.models.get(id);
    const bytesOnDisk = fs.existsSync(model.path) ? folderBytes(model.path) : 0;
    const none = { config: null, params: null, effectiveDepth: null, schedule: null, chatTemplate: null, trainedContext: null };
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
        trainedContext: trainedContext(this.store, model),
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
    if (chat.modelId === null) throw new KindedError('bad_input', 'this chat has no model');
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
    if (chat.modelId === null) throw new KindedError('bad_input', 'pick a model for this chat first');
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
    this.uploads.close();
    this.store.close();
  }
}
