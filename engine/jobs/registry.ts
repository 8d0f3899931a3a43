// Jobs the engine service runs in a child process (long, CPU-heavy work that
// would otherwise block the engine's event loop for seconds at a time): each
// kind has its params (the protocol request's, with folders for model ids),
// checked when the child starts; its result (the protocol's, for the job kind
// the service shows it as), checked when it comes back; and its work, a
// function of the store, the params and a JobContext, loaded in the child only.
import fs from 'node:fs';
import { z } from 'zod';
import type { Store } from '../store/store';
import type { JobContext } from './job';
import type { EvalTarget } from '../eval/record';
import { JOB_RESULTS, requests } from '../protocol/protocol';
import { FinetuneConfig } from '../train/config';

const id = z.number().int().positive();
const folder = z.string().min(1);

type Work<P extends z.ZodType, R extends z.ZodType> = (store: Store, params: z.output<P>, ctx: JobContext) => Promise<z.input<R>>;

interface ChildJob<P extends z.ZodType, R extends z.ZodType> {
  params: P;
  result: R;
  /** Validates the params sent to the child, loads the work's modules and runs it. */
  run(store: Store, params: unknown, ctx: JobContext): Promise<z.input<R>>;
}

function childJob<P extends z.ZodType, R extends z.ZodType>(params: P, result: R, load: () => Promise<Work<P, R>>): ChildJob<P, R> {
  return { params, result, run: async (store, raw, ctx) => (await load())(store, params.parse(raw), ctx) };
}

const quantize = requests['quantize.start'].params.shape;
const inspect = requests['inspect.start'].params.shape;
const convert = requests['convert.start'].params.shape;
const evaluate = requests['eval.start'].params.shape;

const QuantizeJobParams = z.object({
  modelDir: folder,
  outDir: folder,
  method: quantize.method,
  groupSize: quantize.groupSize,
  keepEmbeddingFp: quantize.keepEmbeddingFp,
  evalText: folder,
});

const InspectJobParams = z.object({
  /** A preset name or a model folder. */
  target: z.string().min(1),
  strategy: inspect.strategy,
  repeats: inspect.repeats,
  probeText: inspect.probeText,
  latency: inspect.latency,
});

const ConvertJobParams = z.object({
  modelDir: folder,
  outDir: folder,
  conversion: z.discriminatedUnion('operation', [
    z.object({ operation: z.literal('share'), strategy: convert.strategy, pick: convert.pick }),
    z.object({ operation: z.literal('unshare') }),
  ]),
  evalText: folder.optional(),
});

const EvalJobParams = z.object({
  target: z.object({ dir: folder, modelId: id.nullable(), checkpointId: id.nullable(), runId: id.nullable() }) satisfies z.ZodType<EvalTarget>,
  text: evaluate.text,
  tasks: evaluate.tasks,
  limit: evaluate.limit,
  /** Perplexity: tokens per window, the length the model was trained on where known (else its context). */
  window: z.number().int().min(2).optional(),
});

const lab = requests['lab.start'].params.shape;
/** A lab experiment by its file (the service resolves names), at a scale. */
const LabJobParams = z.object({ file: folder, scale: lab.scale, runtime: lab.runtime, evalText: lab.evalText });

const MergeJobParams = z.object({ adapterModelId: id, adapterDir: folder, name: z.string().min(1) });

const GgufImportParams = z.object({ file: folder, outDir: folder });

const ExportJobParams = z.object({ modelDir: folder, outDir: folder, options: requests['export.start'].params.shape.options });

/** A fine-tuning configuration (its model a folder) written as a job folder into outDir. */
const JobExportParams = z.object({ config: FinetuneConfig, outDir: folder });

export const CHILD_JOBS = {
  finetune: childJob(FinetuneConfig, JOB_RESULTS.finetune, async () => (await import('../train/run')).startFinetune),
  'finetune-resume': childJob(requests['finetune.resume'].params, JOB_RESULTS.finetune, async () => {
    const { resumeFinetune } = await import('../train/run');
    return (store, p, ctx) => resumeFinetune(store, p.runId, ctx);
  }),
  quantize: childJob(QuantizeJobParams, JOB_RESULTS.quantize, async () => {
    const [{ hasTokenizer, loadTokenizer }, { readModelFolder }, { quantizeJob }, { recordQuantization }] = await Promise.all([
      import('../tokenizer/tokenizer'),
      import('../folder/kind'),
      import('../quant/job'),
      import('../quant/record'),
    ]);
    return async (store, p, ctx) => {
      // Without a tokenizer: sizes and per-layer errors (on fixed ids), no perplexity.
      const { tokenizerDir } = readModelFolder(p.modelDir);
      const evalIds = hasTokenizer(tokenizerDir) ? loadTokenizer(tokenizerDir).encode(fs.readFileSync(p.evalText, 'utf8'), { bos: true }) : null;
      const report = await quantizeJob({ ...p, evalIds, evalSource: p.evalText }, ctx);
      return recordQuantization(store, report);
    };
  }),
  inspect: childJob(InspectJobParams, JOB_RESULTS.inspect, async () => {
    const [{ inspect, isPresetName }, { recordInspection }] = await Promise.all([import('../inspect/report'), import('../inspect/record')]);
    return async (store, p, ctx) => {
      const probe = p.probeText ? { text: fs.readFileSync(p.probeText, 'utf8'), path: p.probeText } : undefined;
      const report = await inspect(
        p.target,
        { strategy: p.strategy, repeats: p.repeats, probe, latency: p.latency ? { steps: 24, rounds: 3 } : undefined },
        ctx,
      );
      if (!isPresetName(p.target)) recordInspection(store, report);
      return report;
    };
  }),
  convert: childJob(ConvertJobParams, JOB_RESULTS.convert, async () => {
    const [{ loadTokenizer }, { readModelFolder }, { convertJob }, { recordConversion }] = await Promise.all([
      import('../tokenizer/tokenizer'),
      import('../folder/kind'),
      import('../inspect/convert'),
      import('../inspect/record'),
    ]);
    return async (store, p, ctx) => {
      const evalText = p.evalText
        ? { ids: loadTokenizer(readModelFolder(p.modelDir).tokenizerDir).encode(fs.readFileSync(p.evalText, 'utf8'), { bos: true }), source: p.evalText }
        : undefined;
      return recordConversion(store, await convertJob({ modelDir: p.modelDir, outDir: p.outDir, conversion: p.conversion, evalText }, ctx));
    };
  }),
  'gguf-import': childJob(GgufImportParams, JOB_RESULTS.export.omit({ bytes: true }), async () => {
    const { importGguf } = await import('../export/gguf-import');
    return (_store, p, ctx) =>
      importGguf(p.file, p.outDir, (fraction, message) => ctx.progress({ phase: message, done: Math.round(fraction * 1000), total: 1000 }));
  }),
  export: childJob(ExportJobParams, JOB_RESULTS.export, async () => {
    const { exportModel } = await import('../export/export');
    return (_store, p, ctx) => exportModel(p.modelDir, p.outDir, p.options, ctx);
  }),
  'job-export': childJob(JobExportParams, JOB_RESULTS['job-export'], async () => {
    const { exportJob } = await import('../job/export');
    return (_store, p, ctx) => exportJob(p.config, p.outDir, ctx);
  }),
  merge: childJob(MergeJobParams, JOB_RESULTS.merge, async () => {
    const [{ mergeLoraFolder }, { readModelFolder }, { countParams }] = await Promise.all([
      import('../train/lora'),
      import('../folder/kind'),
      import('../model/config'),
    ]);
    return async (store, p, ctx) => {
      ctx.progress({ phase: 'merging' });
      const adapter = readModelFolder(p.adapterDir);
      const base = readModelFolder(adapter.modelDir);
      const model = await store.models.writeAndAdd(
        {
          name: p.name,
          source: 'derived',
          format: 'safetensors', // what saveModel writes
          config: base.configJson ?? undefined,
          paramCount: countParams(base.config).total,
          parentModelId: p.adapterModelId,
        },
        (dir) => mergeLoraFolder(p.adapterDir, dir, adapter.modelDir),
      );
      return { modelId: model.id, name: model.name };
    };
  }),
  lab: childJob(LabJobParams, JOB_RESULTS.lab, async () => {
    const [{ readExperiment }, { runExperiment }] = await Promise.all([import('../lab/experiment'), import('../lab/run')]);
    return (store, p, ctx) => runExperiment(store, readExperiment(p.file), { scale: p.scale, runtime: p.runtime, evalText: p.evalText }, ctx);
  }),
  eval: childJob(EvalJobParams, JOB_RESULTS.eval, async () => {
    const [{ evaluateModel }, { recordEvaluation }] = await Promise.all([import('../eval/job'), import('../eval/record')]);
    return async (store, p, ctx) => {
      const report = await evaluateModel({ modelDir: p.target.dir, text: p.text, tasks: p.tasks, limit: p.limit, window: p.window }, ctx);
      return recordEvaluation(store, report, p.target);
    };
  }),
};

export type ChildKind = keyof typeof CHILD_JOBS;
export type ChildParams<K extends ChildKind> = z.input<(typeof CHILD_JOBS)[K]['params']>;
export type ChildResult<K extends ChildKind> = z.output<(typeof CHILD_JOBS)[K]['result']>;
