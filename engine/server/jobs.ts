// Jobs of the engine service: long work started by a request, which returns a
// job id at once; progress and the end are announced as 'job' events; any job
// can be cancelled. Work runs one job at a time per lane (a model computes one
// thing at a time; downloads need not wait for it).
import crypto from 'node:crypto';
import type { JobKind, JobResult, JobSnapshot } from '../protocol/protocol';
import { CancelledError, type JobContext, type JobProgress } from '../jobs/job';

export type JobWork<K extends JobKind> = (ctx: JobContext) => Promise<JobResult<K>>;

interface Job {
  snapshot: JobSnapshot;
  controller: AbortController;
}

export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly lanes = new Map<string, Promise<unknown>>();

  constructor(private readonly announce: (job: JobSnapshot) => void) {}

  /**
   * Starts `work` after the jobs already queued in `lane`; its result is of
   * the type the protocol gives jobs of `kind`. Progress events are throttled
   * to ~10 per second; the last state is always announced.
   */
  start<K extends JobKind>(kind: K, title: string, work: JobWork<K>, lane = 'compute'): string {
    const id = crypto.randomUUID();
    const controller = new AbortController();
    // A snapshot of kind K (TypeScript does not narrow the union by a generic kind).
    const job: Job = { snapshot: { id, kind, title, state: 'running', startedAt: Date.now() } as JobSnapshot, controller };
    this.jobs.set(id, job);
    let lastSent = 0;
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (p: JobProgress) => {
        job.snapshot = { ...job.snapshot, progress: p };
        const now = Date.now();
        if (now - lastSent >= 100 || (p.total !== undefined && p.done === p.total)) {
          lastSent = now;
          this.announce(job.snapshot);
        }
      },
    };
    this.announce(job.snapshot);
    const previous = this.lanes.get(lane) ?? Promise.resolve();
    const run = previous
      .catch(() => {})
      .then(async () => {
        if (controller.signal.aborted) throw new CancelledError();
        return work(ctx);
      })
      .then(
        (result) => this.finish(job, controller.signal.aborted ? 'cancelled' : 'done', { result }),
        (err) => {
          if (err instanceof CancelledError || controller.signal.aborted) this.finish(job, 'cancelled', {});
          else this.finish(job, 'failed', { error: err instanceof Error ? err.message.split('\n')[0] : String(err) });
        },
      );
    this.lanes.set(lane, run);
    return id;
  }

  /** `extra.result` is of the job's kind (start's signature sees to it). */
  private finish(job: Job, state: JobSnapshot['state'], extra: { result?: unknown; error?: string }): void {
    job.snapshot = { ...job.snapshot, state, ...extra } as JobSnapshot;
    this.announce(job.snapshot);
    // Keep finished jobs a while for late listeners, then forget them.
    setTimeout(() => this.jobs.delete(job.snapshot.id), 60_000).unref();
  }

  /** Aborts a job; `reason` reaches the job's signal (a training run pauses unless the reason is 'cancel'). */
  cancel(id: string, reason?: string): boolean {
    const job = this.jobs.get(id);
    if (!job || job.snapshot.state !== 'running') return false;
    job.controller.abort(reason);
    return true;
  }

  list(): JobSnapshot[] {
    return [...this.jobs.values()].map((j) => j.snapshot);
  }

  /** Resolves when every lane is idle (for shutdown and tests). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.lanes.values()]);
  }

  cancelAll(): void {
    for (const j of this.jobs.values()) j.controller.abort();
  }
}
