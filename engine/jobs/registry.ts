// Jobs the engine service runs in a child process (long, CPU-heavy work that
// would otherwise block the engine's event loop for seconds at a time):
// each kind is a function of the store, its params and a JobContext.
import type { Store } from '../store/store';
import type { JobContext } from './job';

export type ChildJob = (store: Store, params: never, ctx: JobContext) => Promise<unknown>;

export const CHILD_JOBS: Record<string, () => Promise<ChildJob>> = {
  finetune: async () => (await import('../train/run')).startFinetune as ChildJob,
  'finetune-resume': async () => {
    const { resumeFinetune } = await import('../train/run');
    return ((store: Store, p: { runId: number }, ctx: JobContext) => resumeFinetune(store, p.runId, ctx)) as ChildJob;
  },
};
