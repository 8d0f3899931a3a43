// The Runs page's requests: every run with what it trained and how well, and
// managing one at any time (not only from the wizard that started it):
// rename, cancel, delete. Pausing is the run's job's pause (jobs.cancel) and
// resuming is finetune.resume; the job running a run is found by its runId.
import type { EngineService } from './service';
import type { RunSummary } from '../protocol/protocol';
import type { Run } from '../store/records';
import { isResumable } from '../store/records';
import { readTrainerState } from '../train/checkpoints';
import { KindedError } from '../errors';
import { CANCEL } from '../train/trainer';

/** Tokens a training run has trained on, as its newest checkpoint's trainer state counts them. */
function tokensSeen(svc: EngineService, run: Run): number | null {
  if (run.kind !== 'finetune' && run.kind !== 'pretrain') return null;
  const point = svc.store.checkpoints.resumePoint(run.id);
  if (!point) return null;
  try {
    return readTrainerState(point.path).tokensSeen;
  } catch {
    return null; // a checkpoint from before the count was kept, or a damaged one: unknown
  }
}

export function runSummaries(svc: EngineService): RunSummary[] {
  return svc.store.runs.overview().map((o) => ({
    ...o,
    method: o.run.kind === 'finetune' && typeof o.run.config.method === 'string' ? o.run.config.method : null,
    tokens: tokensSeen(svc, o.run),
    jobId: svc.jobs.forRun(o.run.id)?.id ?? null,
  }));
}

/** Stops a run for good: its job (running or waiting) is cancelled, and a paused or interrupted run is marked cancelled. */
export function cancelRun(svc: EngineService, id: number): Run {
  const job = svc.jobs.forRun(id);
  if (job) svc.jobs.cancel(job.id, CANCEL);
  const run = svc.store.runs.get(id);
  if (isResumable(run.status)) return svc.store.runs.setStatus(id, 'cancelled');
  if (job) return run;
  throw new KindedError('conflict', `run ${id} is ${run.status}: only a running, waiting, paused or interrupted run can be cancelled`);
}

/** Deletes a run with its checkpoints; one a job is training (or about to) is refused. */
export function removeRun(svc: EngineService, id: number): { removed: true } {
  const job = svc.jobs.forRun(id);
  if (job) throw new KindedError('busy', `run ${id} is ${job.waitingFor ? 'waiting to run' : 'running'}: pause or cancel it first`);
  svc.store.runs.remove(id);
  return { removed: true };
}
