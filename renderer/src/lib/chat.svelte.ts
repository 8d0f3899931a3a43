// State of the chat window: the open conversation as a message tree, the
// branch on screen, the answer streaming in.
import type { AnswerStarted, Chat, ChatView, Message, Sampling } from '../../../engine/protocol/protocol';
import { DEFAULT_CHAT_SAMPLING } from '../../../engine/protocol/protocol';
import { engine } from './client';
import { app } from './app.svelte';

export class ChatState {
  chats = $state<Chat[]>([]);
  search = $state('');
  view = $state<ChatView | null>(null);
  /** Leaf of the branch on screen. */
  leafId = $state<number | null>(null);
  /** The answer being generated: job, message, tokens/s. */
  streaming = $state<{ jobId: string; messageId: number; tokensPerSecond: number } | null>(null);

  constructor() {
    engine.onConnection((up) => {
      if (!up) {
        this.streaming = null;
        return;
      }
      void this.loadList();
      void this.reload();
    });
    engine.onEvent((e) => {
      if (e.type === 'token' && this.view && e.chatId === this.view.chat.id) {
        this.view.messages = this.view.messages.map((m) => (m.id === e.messageId ? { ...m, content: m.content + e.text } : m));
        if (this.streaming?.jobId === e.jobId && e.tokensPerSecond > 0) this.streaming = { ...this.streaming, tokensPerSecond: e.tokensPerSecond };
      }
      if (e.type === 'job' && this.streaming?.jobId === e.job.id && e.job.state !== 'running') {
        if (e.job.state === 'failed') app.notify('error', `The answer failed: ${e.job.error}`);
        this.streaming = null;
        void this.reload();
      }
      if (e.type === 'chat') {
        void this.loadList();
        if (this.view?.chat.id === e.chatId && !this.streaming) void this.reload();
      }
    });
  }

  get sampling(): Sampling {
    return { ...DEFAULT_CHAT_SAMPLING, ...(this.view?.chat.sampling as Partial<Sampling>) };
  }

  async loadList(): Promise<void> {
    const chats = await app.attempt('listing chats', () => engine.call('chats.list', { search: this.search || undefined }));
    if (chats) this.chats = chats;
  }

  async open(id: number | null): Promise<void> {
    if (id === null) {
      this.view = null;
      this.leafId = null;
      return;
    }
    const view = await app.attempt('opening the chat', () => engine.call('chats.get', { id }));
    if (view) {
      this.view = view;
      this.leafId = view.thread[view.thread.length - 1] ?? null;
    }
  }

  /**
   * Fetches the open chat again. What changed on screen meanwhile wins: a
   * branch picked or an answer started after the request keeps its leaf, and
   * text streamed into the answer in progress is kept until it is stored.
   */
  async reload(): Promise<void> {
    if (!this.view) return;
    const asked = this.leafId;
    const view = await app.attempt('reloading the chat', () => engine.call('chats.get', { id: this.view!.chat.id, leafId: asked ?? undefined }));
    if (!view || view.chat.id !== this.view?.chat.id) return;
    const local = new Map(this.view.messages.map((m) => [m.id, m]));
    const live = this.streaming?.messageId;
    const messages = view.messages.map((m) => (m.id === live && (local.get(m.id)?.content.length ?? 0) > m.content.length ? local.get(m.id)! : m));
    const fetched = new Set(messages.map((m) => m.id));
    this.view = { ...view, messages: [...messages, ...[...local.values()].filter((m) => !fetched.has(m.id))] };
    if (this.leafId === asked) this.leafId = view.thread[view.thread.length - 1] ?? null;
  }

  /** Messages of the branch on screen, root → leaf. */
  get thread(): Message[] {
    if (!this.view || this.leafId === null) return [];
    const byId = new Map(this.view.messages.map((m) => [m.id, m]));
    const out: Message[] = [];
    for (let m = byId.get(this.leafId); m; m = m.parentId === null ? undefined : byId.get(m.parentId)) out.unshift(m);
    return out;
  }

  siblings(m: Message): Message[] {
    return (this.view?.messages ?? []).filter((x) => x.parentId === m.parentId).sort((a, b) => a.id - b.id);
  }

  /** Shows branch `m`, following its newest descendants to a leaf. */
  showBranch(m: Message): void {
    const msgs = this.view?.messages ?? [];
    let leaf = m;
    for (;;) {
      const kids = msgs.filter((x) => x.parentId === leaf.id);
      if (!kids.length) break;
      leaf = kids.reduce((a, b) => (b.id > a.id ? b : a));
    }
    this.leafId = leaf.id;
  }

  /** Shows the new question and the empty answer at once (no round trip), so the first tokens land on screen as they come. */
  private async startAnswer(call: () => Promise<AnswerStarted>): Promise<void> {
    const r = await app.attempt('sending', call);
    if (!r || !this.view) return;
    this.streaming = { jobId: r.jobId, messageId: r.assistantMessageId, tokensPerSecond: 0 };
    const known = new Set(this.view.messages.map((m) => m.id));
    this.view = { ...this.view, messages: [...this.view.messages, ...r.messages.filter((m) => !known.has(m.id))] };
    this.leafId = r.assistantMessageId;
  }

  async send(content: string): Promise<void> {
    if (!this.view) return;
    const chatId = this.view.chat.id;
    await this.startAnswer(() => engine.call('chat.send', { chatId, content, parentId: this.leafId }));
  }

  async regenerate(m: Message): Promise<void> {
    if (!this.view) return;
    const chatId = this.view.chat.id;
    await this.startAnswer(() => engine.call('chat.regenerate', { chatId, messageId: m.id }));
  }

  async edit(m: Message, content: string): Promise<void> {
    if (!this.view) return;
    const chatId = this.view.chat.id;
    await this.startAnswer(() => engine.call('chat.edit', { chatId, messageId: m.id, content }));
  }

  async stop(): Promise<void> {
    if (this.streaming) await app.attempt('stopping', () => engine.call('jobs.cancel', { jobId: this.streaming!.jobId }));
  }

  async update(patch: { title?: string; modelId?: number; systemPrompt?: string; sampling?: Partial<Sampling>; chatTemplate?: string | null }): Promise<void> {
    if (!this.view) return;
    const id = this.view.chat.id;
    const view = await app.attempt('saving chat settings', () => engine.call('chats.update', { id, ...patch }));
    if (view) this.view = { ...view, messages: this.view.messages };
  }

  async create(modelId: number): Promise<number | undefined> {
    const view = await app.attempt('creating a chat', () => engine.call('chats.create', { modelId }));
    await this.loadList();
    return view?.chat.id;
  }

  async remove(id: number): Promise<void> {
    await app.attempt('deleting the chat', () => engine.call('chats.remove', { id }));
    if (this.view?.chat.id === id) this.view = null;
    await this.loadList();
  }

  async rename(id: number, title: string): Promise<void> {
    await app.attempt('renaming the chat', () => engine.call('chats.update', { id, title }));
    await this.loadList();
    if (this.view?.chat.id === id) this.view = { ...this.view, chat: { ...this.view.chat, title } };
  }

  async exportAs(format: 'markdown' | 'json'): Promise<void> {
    if (!this.view) return;
    const id = this.view.chat.id;
    const r = await app.attempt('exporting', () => engine.call('chats.export', { id, leafId: this.leafId ?? undefined, format }));
    if (!r) return;
    if (engine.desktop) {
      await engine.desktop.saveFile(r.filename, r.content);
      return;
    }
    const url = URL.createObjectURL(new Blob([r.content], { type: format === 'json' ? 'application/json' : 'text/markdown' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = r.filename;
    a.click();
    URL.revokeObjectURL(url);
  }
}

export const chat = new ChatState();
