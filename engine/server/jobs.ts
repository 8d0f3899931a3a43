// Jobs of the engine service: long work started by a request, which returns a
// job id at once; progress and the end are announced as 'job' events; any job
// can be cancelled. Work runs one job at a time per lane (a model computes one
// thing at a time; downloads need not wait for it): a job behind another is
// announced as waiting for it (`waitingFor`, the other's title) until it starts,
// and cancelling it then ends it at once.
import crypto from 'node:crypto';
import type { JobKind, JobResult, JobSnapshot } from '../protocol/protocol';
import { CancelledError, type JobContext, type JobProgress } from '../jobs/job';

export type JobWork<K extends JobKind> = (ctx: JobContext) => Promise<JobResult<K>>;

interface Job {
  snapshot: JobSnapshot;
  controller: AbortController;
  lane: string;
}

export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly lanes = new Map<string, Promise<unknown>>();
  /** The unfinished jobs of each lane in start order: the first one runs, the others wait for it. */
  private readonly queues = new Map<string, Job[]>();

  constructor(private readonly announce: (job: JobSnapshot) => void) {}

  /**
   * Starts `work` after the jobs already queued in `lane`; its result is of
   * the type the protocol gives jobs of `kind`. `runId` names the run it
   * records when that is known before it starts (a resumed run); work that
   * creates one names it in a progress report. Progress events are throttled
   * to ~10 per second; the last state, and a newly named run, are always announced.
   */
  start<K extends JobKind>(kind: K, title: string, work: JobWork<K>, lane = 'compute', runId?: number): string {
    const id = crypto.randomUUID();
    const controller = new AbortController();
    const queue = this.queues.get(lane) ?? [];
    this.queues.set(lane, queue);
    const waitingFor = queue[0]?.snapshot.title;
    // A snapshot of kind K (TypeScript does not narrow the union by a generic kind).
    const snapshot = { id, kind, title, state: 'running', startedAt: Date.now(), runId, waitingFor } as JobSnapshot;
    const job: Job = { snapshot, controller, lane };
    queue.push(job);
    this.jobs.set(id, job);
    let lastSent = 0;
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (p: JobProgress) => {
        const named = p.runId !== undefined && p.runId !== job.snapshot.runId;
        job.snapshot = { ...job.snapshot, progress: p, runId: p.runId ?? job.snapshot.runId };
        const now = Date.now();
        if (named || now - lastSent >= 100 || (p.total !== undefined && p.done === p.total)) {
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
        if (job.snapshot.waitingFor !== undefined) this.update(job, { waitingFor: undefined });
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

  /** `change` fits the job's kind (a result only comes from finish, which start's signature types). */
  private update(job: Job, change: Partial<JobSnapshot> | { result?: unknown }): void {
    job.snapshot = { ...job.snapshot, ...change } as JobSnapshot;
    this.announce(job.snapshot);
  }

  /** `extra.result` is of the job's kind (start's signature sees to it). A job ends once (a waiting job cancelled ends before its turn). */
  private finish(job: Job, state: JobSnapshot['state'], extra: { result?: unknown; error?: string }): void {
    if (job.snapshot.state !== 'running') return;
    this.update(job, { state, ...extra, waitingFor: undefined });
    const queue = this.queues.get(job.lane) ?? [];
    queue.splice(queue.indexOf(job), 1);
    // Those still waiting now wait for the job at the head of the lane.
    const head = queue[0]?.snapshot.title;
    for (const other of queue) if (other.snapshot.waitingFor !== undefined && other !== queue[0]) this.update(other, { waitingFor: head });
    // Keep finished jobs a while for late listeners, then forget them.
    setTimeout(() => this.jobs.delete(job.snapshot.id), 60_000).unref();
  }

  /** Aborts a job; `reason` reaches the job's signal (a training run pauses unless the reason is 'cancel'). A waiting job ends at once. */
  cancel(id: string, reason?: string): boolean {
    const job = this.jobs.get(id);
    if (!job || job.snapshot.state !== 'running') return false;
    job.controller.abort(reason);
    if (job.snapshot.waitingFor !== undefined) this.finish(job, 'cancelled', {});
    return true;
  }

  list(): JobSnapshot[] {
    return [...this.jobs.values()].map((j) => j.snapshot);
  }

  /** The unfinished job (running or waiting) that records run `runId`, if any. */
  forRun(runId: number): JobSnapshot | undefined {
    return this.list().find((j) => j.state === 'running' && j.runId === runId);
  }

  /** Resolves when every lane is idle (for shutdown and tests). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.lanes.values()]);
  }

  cancelAll(): void {
    for (const j of this.jobs.values()) j.controller.abort();
  }
}
