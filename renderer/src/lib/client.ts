// The typed client of the engine protocol: the only way the UI talks to the
// engine. Two transports carry the same frames: a WebSocket in web mode, the
// preload bridge in the desktop shell. When the engine goes away every
// pending call fails at once (nothing waits forever) and the client
// reconnects; the UI shows a notice meanwhile.
import type { EngineEvent, ErrorCode, Method, Params, Result, ServerFrame } from '../../../engine/protocol/protocol';
import { uploadDataset } from '../../../engine/protocol/upload';

/** What the Electron preload exposes on window (see electron/preload.ts). */
export interface DesktopBridge {
  send(frame: { id: number; method: string; params: unknown }): void;
  onFrame(cb: (frame: ServerFrame) => void): void;
  onConnection(cb: (up: boolean) => void): void;
  /** A folder picked with File › Import Model Folder… */
  onImportFolder(cb: (dir: string) => void): void;
  pickFolder(title: string): Promise<string | null>;
  pickFile(title: string, extensions: string[]): Promise<string | null>;
  saveFile(name: string, content: string): Promise<boolean>;
}

declare global {
  interface Window {
    mlwDesktop?: DesktopBridge;
  }
}

export class EngineError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode,
  ) {
    super(message);
  }
}

const CONNECT_WAIT_MS = 10_000;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Transport {
  send(frame: { id: number; method: string; params: unknown }): boolean;
}

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private readonly connectionListeners = new Set<(up: boolean) => void>();
  private transport: Transport | null = null;
  connected = false;

  constructor() {
    if (window.mlwDesktop) this.useBridge(window.mlwDesktop);
    else this.connectSocket();
  }

  get desktop(): DesktopBridge | undefined {
    return window.mlwDesktop;
  }

  /**
   * Calls an engine method; rejects with EngineError on an error answer or a
   * lost engine. A call made while (re)connecting waits for the connection,
   * but never longer than CONNECT_WAIT_MS.
   */
  async call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    if (!this.transport) await this.waitForConnection();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      if (!this.transport || !this.transport.send({ id, method, params })) {
        this.pending.delete(id);
        reject(new EngineError('the engine is not connected', 'engine_restarted'));
      }
    });
  }

  /** Saves a text as a file of the engine's datasets folder, sent in pieces that each fit a frame; its path. */
  uploadDataset(name: string, text: string): Promise<string> {
    return uploadDataset((params) => this.call('datasets.upload', params), name, text);
  }

  private waitForConnection(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new EngineError('the engine is not connected', 'engine_restarted'));
      }, CONNECT_WAIT_MS);
      const off = this.onConnection((up) => {
        if (!up) return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  onEvent(cb: (e: EngineEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  onConnection(cb: (up: boolean) => void): () => void {
    this.connectionListeners.add(cb);
    return () => this.connectionListeners.delete(cb);
  }

  private receive(frame: ServerFrame): void {
    if ('event' in frame) {
      for (const l of this.listeners) l(frame.event);
      return;
    }
    const p = this.pending.get(frame.id);
    if (!p) return;
    this.pending.delete(frame.id);
    if ('error' in frame) p.reject(new EngineError(frame.error.message, frame.error.code));
    else p.resolve(frame.result);
  }

  private setConnected(up: boolean): void {
    this.connected = up;
    if (!up) {
      for (const p of this.pending.values()) p.reject(new EngineError('the engine stopped before answering', 'engine_restarted'));
      this.pending.clear();
    }
    for (const l of this.connectionListeners) l(up);
  }

  private useBridge(bridge: DesktopBridge): void {
    this.transport = { send: (f) => (bridge.send(f), true) };
    bridge.onFrame((f) => this.receive(f));
    bridge.onConnection((up) => this.setConnected(up));
    this.connected = true;
  }

  private connectSocket(delay = 0): void {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    setTimeout(() => {
      const ws = new WebSocket(`${proto}//${location.host}/ws`);
      ws.onopen = () => {
        this.transport = { send: (f) => (ws.readyState === WebSocket.OPEN ? (ws.send(JSON.stringify(f)), true) : false) };
        this.setConnected(true);
      };
      ws.onmessage = (m) => this.receive(JSON.parse(String(m.data)));
      ws.onclose = () => {
        const wasUp = this.connected;
        this.transport = null;
        if (wasUp) this.setConnected(false);
        this.connectSocket(Math.min(5000, delay * 2 || 250));
      };
    }, delay);
  }
}

export const engine = new EngineClient();
