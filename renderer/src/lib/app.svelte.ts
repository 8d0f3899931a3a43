// App-wide state: the engine status, the model list, notices, the route.
import type { EngineStatus, JobKind, JobSnapshot, Model, Resources } from '../../../engine/protocol/protocol';
import { engine } from './client';

export const PAGES = ['models', 'chat', 'finetune', 'quantize', 'inspector', 'runs', 'lab'] as const;
export type Page = (typeof PAGES)[number];

/** A snapshot of a job of `kind`: its result has that kind's type. */
export type JobOf<K extends JobKind> = Extract<JobSnapshot, { kind: K }>;
const isKind = <K extends JobKind>(job: JobSnapshot, kind: K): job is JobOf<K> => job.kind === kind;

export interface Notice {
  id: number;
  level: 'info' | 'warning' | 'error';
  message: string;
}

function parseHash(): { page: Page; arg: string | null } {
  const [, page, arg] = location.hash.split('/');
  return { page: (PAGES as readonly string[]).includes(page) ? (page as Page) : 'chat', arg: arg ?? null };
}

class AppState {
  route = $state(parseHash());
  status = $state<EngineStatus | null>(null);
  connected = $state(engine.connected);
  models = $state<Model[]>([]);
  jobs = $state<Record<string, JobSnapshot>>({});
  notices = $state<Notice[]>([]);
  /** What the app ships (the default model, sample datasets), once known. */
  resources = $state<Resources | null>(null);
  /** A first start: the store holds nothing but the bundled default model (or nothing), so the Models page welcomes. */
  onlyBundled = $derived(
    this.resources !== null &&
      this.resources.defaultModel !== null &&
      this.models.every((m) => [this.resources!.defaultModel, this.resources!.chatModel].some((e) => e !== null && e.path === m.path)),
  );
  /** A folder from the desktop menu that the Models page imports when it shows. */
  folderToImport = $state<string | null>(null);
  private noticeId = 0;

  constructor() {
    window.addEventListener('hashchange', () => (this.route = parseHash()));
    engine.onConnection((up) => {
      this.connected = up;
      if (up) void this.refresh();
      else this.notify('warning', 'The engine stopped; reconnecting…');
    });
    engine.onEvent((e) => {
      if (e.type === 'job') this.jobs = { ...this.jobs, [e.job.id]: e.job };
      if (e.type === 'models') void this.loadModels();
      if (e.type === 'notice') this.notify(e.level, e.message);
    });
    engine.desktop?.onImportFolder((dir) => {
      this.folderToImport = dir;
      this.go('models');
    });
    if (engine.connected) void this.refresh();
    setInterval(() => {
      if (this.connected) void this.loadStatus();
    }, 3000);
  }

  /** The job `id` as last announced, if it is one of `kind`. */
  job<K extends JobKind>(id: string | null, kind: K): JobOf<K> | undefined {
    const job = id ? this.jobs[id] : undefined;
    return job && isKind(job, kind) ? job : undefined;
  }

  go(page: Page, arg?: string | number): void {
    location.hash = `#/${page}${arg !== undefined ? `/${arg}` : ''}`;
  }

  notify(level: Notice['level'], message: string): void {
    const n = { id: ++this.noticeId, level, message };
    this.notices = [...this.notices, n];
    setTimeout(() => (this.notices = this.notices.filter((x) => x.id !== n.id)), level === 'error' ? 12000 : 6000);
  }

  /** Runs an engine call, turning a failure into a visible notice. */
  async attempt<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.notify('error', `${what}: ${(e as Error).message}`);
      return undefined;
    }
  }

  async refresh(): Promise<void> {
    const firstLoad = this.resources === null;
    await Promise.all([this.loadStatus(), this.loadModels(), this.loadResources(), this.loadJobs()]);
    // Opened without a page on a first start: the Models page's welcome, not an empty chat.
    if (firstLoad && !location.hash && this.onlyBundled) this.go('models');
  }

  async loadResources(): Promise<void> {
    const resources = await this.attempt('listing the bundled resources', () => engine.call('resources.list', {}));
    if (resources) this.resources = resources;
  }

  /** The engine's jobs (after a reload, one waiting for its lane announces nothing until it starts); events since win. */
  async loadJobs(): Promise<void> {
    const jobs = await this.attempt('listing jobs', () => engine.call('jobs.list', {}));
    if (jobs) this.jobs = { ...Object.fromEntries(jobs.map((j) => [j.id, j])), ...this.jobs };
  }

  async loadStatus(): Promise<void> {
    try {
      this.status = await engine.call('engine.status', {});
    } catch {
      // reported through the connection state
    }
  }

  async loadModels(): Promise<void> {
    const models = await this.attempt('listing models', () => engine.call('models.list', {}));
    if (models) this.models = models;
  }
}

export const app = new AppState();

/** Sizes in the one unit the app, the CLI and the reports share (engine/protocol/sizes.ts). */
export { formatBytes } from '../../../engine/protocol/sizes';

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
