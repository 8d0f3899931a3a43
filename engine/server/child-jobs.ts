// Runs a registered job (engine/jobs/registry.ts) in a child Node process and
// mirrors it as a job of the service: progress in, cancel out, the result
// checked against its schema. A cancelled job gets time to stop cleanly (a
// training run writes its pause checkpoint), then is killed; a crashed child
// fails its job with the reason.
import path from 'node:path';
import { fork } from 'node:child_process';
import type { BackendName } from '../backend/select';
import { CancelledError, type JobContext, type JobProgress } from '../jobs/job';
import { CHILD_JOBS, type ChildKind, type ChildParams, type ChildResult } from '../jobs/registry';

const CHILD = path.resolve(import.meta.dirname, '../jobs/child.ts');
/** How long a cancelled job may take to write its last checkpoint before it is killed. */
const STOP_GRACE_MS = 120_000;

type ChildMessage = { type: 'progress'; progress: JobProgress } | { type: 'done'; result: unknown } | { type: 'failed'; error: string; cancelled: boolean };

export function runInChild<K extends ChildKind>(
  kind: K,
  params: ChildParams<K>,
  opts: { home: string; backend?: BackendName },
  ctx: JobContext,
): Promise<ChildResult<K>> {
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      ctx.signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      const reason = typeof ctx.signal.reason === 'string' ? ctx.signal.reason : undefined;
      if (child.connected) child.send({ type: 'abort', reason });
      setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
    };
    ctx.signal.addEventListener('abort', onAbort);
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'progress') ctx.progress(m.progress);
      else if (m.type === 'done') {
        const result = CHILD_JOBS[kind].result.safeParse(m.result);
        // Parsed by K's own result schema (TypeScript sees the union of every kind's here).
        if (result.success) finish(() => resolve(result.data as ChildResult<K>));
        else
          finish(() =>
            reject(
              new Error(`the ${kind} job's result is not what the protocol says: ${result.error.issues[0].path.join('.')}: ${result.error.issues[0].message}`),
            ),
          );
      } else if (m.type === 'failed') finish(() => reject(m.cancelled ? new CancelledError(m.error) : new Error(m.error)));
    });
    child.on('exit', (code, signal) => {
      finish(() =>
        reject(
          ctx.signal.aborted
            ? new CancelledError()
            : new Error(`the ${kind} process ${signal ? `was killed (${signal})` : `exited with code ${code}`} before finishing`),
        ),
      );
    });
    child.send({ type: 'start', kind, params, home: opts.home, backend: opts.backend });
  });
}
