// Jobs the engine service runs in a child process (long, CPU-heavy work that
// would otherwise block the engine's event loop for seconds at a time):
// each kind is a function of the store, its params and a JobContext.
import fs from 'node:fs';
import type { Store } from '../store/store';
import type { JobContext } from './job';

export type ChildJob = (store: Store, params: never, ctx: JobContext) => Promise<unknown>;

export interface QuantizeJobParams {
  modelDir: string;
  outDir: string;
  method: string;
  groupSize?: number;
  keepEmbeddingFp?: boolean;
  evalText: string;
}

export const CHILD_JOBS: Record<string, () => Promise<ChildJob>> = {
  finetune: async () => (await import('../train/run')).startFinetune as ChildJob,
  'finetune-resume': async () => {
    const { resumeFinetune } = await import('../train/run');
    return ((store: Store, p: { runId: number }, ctx: JobContext) => resumeFinetune(store, p.runId, ctx)) as ChildJob;
  },
  quantize: async () => {
    const [{ loadTokenizer }, { quantizeJob }, { recordQuantization }] = await Promise.all([
      import('../tokenizer/tokenizer'),
      import('../quant/job'),
      import('../quant/record'),
    ]);
    return (async (store: Store, p: QuantizeJobParams, ctx: JobContext) => {
      const evalIds = loadTokenizer(p.modelDir).encode(fs.readFileSync(p.evalText, 'utf8'), { bos: true });
      const report = await quantizeJob({ ...p, evalIds, evalSource: p.evalText }, ctx);
      return recordQuantization(store, report);
    }) as ChildJob;
  },
};
