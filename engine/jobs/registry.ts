// Jobs the engine service runs in a child process (long, CPU-heavy work that
// would otherwise block the engine's event loop for seconds at a time):
// each kind is a function of the store, its params and a JobContext.
import fs from 'node:fs';
import type { Store } from '../store/store';
import type { JobContext } from './job';
import type { EvalTarget } from '../eval/record';

export type ChildJob = (store: Store, params: never, ctx: JobContext) => Promise<unknown>;

export interface QuantizeJobParams {
  modelDir: string;
  outDir: string;
  method: string;
  groupSize?: number;
  keepEmbeddingFp?: boolean;
  evalText: string;
}

export interface InspectJobParams {
  /** A preset name or a model folder. */
  target: string;
  strategy?: 'none' | 'immediate' | 'repeat_all' | 'reverse';
  repeats?: number;
  probeText?: string;
  latency: boolean;
}

export interface ConvertJobParams {
  modelDir: string;
  outDir: string;
  conversion: { operation: 'share'; strategy: 'immediate' | 'repeat_all' | 'reverse'; pick: 'every-other' | 'average' } | { operation: 'unshare' };
  evalText?: string;
}

export interface EvalJobParams {
  target: EvalTarget;
  text?: string;
  tasks?: string;
  limit?: number;
}

export const CHILD_JOBS: Record<string, () => Promise<ChildJob>> = {
  finetune: async () => (await import('../train/run')).startFinetune as ChildJob,
  'finetune-resume': async () => {
    const { resumeFinetune } = await import('../train/run');
    return ((store: Store, p: { runId: number }, ctx: JobContext) => resumeFinetune(store, p.runId, ctx)) as ChildJob;
  },
  quantize: async () => {
    const [{ loadTokenizer }, { readModelFolder }, { quantizeJob }, { recordQuantization }] = await Promise.all([
      import('../tokenizer/tokenizer'),
      import('../folder/kind'),
      import('../quant/job'),
      import('../quant/record'),
    ]);
    return (async (store: Store, p: QuantizeJobParams, ctx: JobContext) => {
      const evalIds = loadTokenizer(readModelFolder(p.modelDir).tokenizerDir).encode(fs.readFileSync(p.evalText, 'utf8'), { bos: true });
      const report = await quantizeJob({ ...p, evalIds, evalSource: p.evalText }, ctx);
      return recordQuantization(store, report);
    }) as ChildJob;
  },
  inspect: async () => {
    const [{ inspect, isPresetName }, { recordInspection }] = await Promise.all([import('../inspect/report'), import('../inspect/record')]);
    return (async (store: Store, p: InspectJobParams, ctx: JobContext) => {
      const probe = p.probeText ? { text: fs.readFileSync(p.probeText, 'utf8'), path: p.probeText } : undefined;
      const report = await inspect(p.target, { strategy: p.strategy, repeats: p.repeats, probe, latency: p.latency ? { steps: 24, rounds: 3 } : undefined }, ctx);
      if (!isPresetName(p.target)) recordInspection(store, report);
      return report;
    }) as ChildJob;
  },
  convert: async () => {
    const [{ loadTokenizer }, { readModelFolder }, { convertJob }, { recordConversion }] = await Promise.all([
      import('../tokenizer/tokenizer'),
      import('../folder/kind'),
      import('../inspect/convert'),
      import('../inspect/record'),
    ]);
    return (async (store: Store, p: ConvertJobParams, ctx: JobContext) => {
      const evalText = p.evalText ? { ids: loadTokenizer(readModelFolder(p.modelDir).tokenizerDir).encode(fs.readFileSync(p.evalText, 'utf8'), { bos: true }), source: p.evalText } : undefined;
      return recordConversion(store, await convertJob({ modelDir: p.modelDir, outDir: p.outDir, conversion: p.conversion, evalText }, ctx));
    }) as ChildJob;
  },
  eval: async () => {
    const [{ evaluateModel }, { recordEvaluation }] = await Promise.all([import('../eval/job'), import('../eval/record')]);
    return (async (store: Store, p: EvalJobParams, ctx: JobContext) => {
      const report = await evaluateModel({ modelDir: p.target.dir, text: p.text, tasks: p.tasks, limit: p.limit }, ctx);
      return recordEvaluation(store, report, p.target);
    }) as ChildJob;
  },
};
