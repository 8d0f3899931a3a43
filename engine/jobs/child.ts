// A child process running one job for the engine service (see
// engine/server/child-jobs.ts). Protocol over Node IPC:
//   parent → child  {type:'start', kind, params, home, backend} | {type:'abort'}
//   child → parent  {type:'progress', progress} | {type:'done', result} | {type:'failed', error, cancelled}
import { initBackend, type BackendName } from '../backend/select';
import { openStore } from '../store/open';
import { CHILD_JOBS, type ChildKind } from './registry';
import { CancelledError, type JobProgress } from './job';

interface Start {
  type: 'start';
  kind: string;
  params: unknown;
  home: string;
  backend?: BackendName;
}

const send = (m: object) => process.send?.(m);
const controller = new AbortController();

process.on('message', async (msg: Start | { type: 'abort'; reason?: string }) => {
  // The reason travels with the abort: a trainer pauses on a plain abort and stops on 'cancel'.
  if (msg.type === 'abort') return controller.abort(msg.reason);
  if (msg.type !== 'start') return;
  try {
    if (!Object.hasOwn(CHILD_JOBS, msg.kind)) throw new Error(`unknown job kind "${msg.kind}"`);
    const job = CHILD_JOBS[msg.kind as ChildKind];
    await initBackend(msg.backend);
    const store = openStore({ home: msg.home });
    try {
      const result = await job.run(store, msg.params, { signal: controller.signal, progress: (progress: JobProgress) => send({ type: 'progress', progress }) });
      send({ type: 'done', result });
    } finally {
      store.close();
    }
  } catch (err) {
    send({
      type: 'failed',
      error: err instanceof Error ? err.message.split('\n')[0] : String(err),
      cancelled: err instanceof CancelledError || controller.signal.aborted,
    });
  }
  process.disconnect?.();
});
// The engine going away ends the job (its checkpoints are crash-safe).
process.on('disconnect', () => setTimeout(() => process.exit(0), 100).unref());
