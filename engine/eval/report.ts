// The evaluation report: what was measured, on which model and data, with
// which runtime. Stored as the JSON body of an `evaluation` report in the
// store (linked to the model, or to the checkpoint and its run), so the Runs
// page can compare models and checkpoints; printed as text by the CLI.
import { z } from 'zod';

const Stderr = z.number().min(0).nullable();

export const Metrics = z.object({
  items: z.number().int().positive(),
  acc: z.number().min(0).max(1),
  accStderr: Stderr,
  /** Accuracy after dividing each choice's log-likelihood by its length in characters. */
  accNorm: z.number().min(0).max(1),
  accNormStderr: Stderr,
});

const Common = {
  version: z.literal(1),
  model: z.object({
    path: z.string(),
    /** Checkpoint layout (safetensors, pytorch-bin, …). */
    format: z.string(),
  }),
  runtime: z.object({ name: z.string(), description: z.string() }),
  /** Wall time of the measurement itself (not loading the model). */
  seconds: z.number().min(0),
};

/** A file the evaluation read, identified by its contents. */
const InputFile = z.object({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().min(0) });

export const PerplexityReport = z.object({
  ...Common,
  type: z.literal('perplexity'),
  text: InputFile,
  /** Tokens scored (the text's tokens after BOS). */
  tokens: z.number().int().positive(),
  window: z.number().int().min(2),
  stride: z.number().int().positive(),
  windows: z.number().int().positive(),
  /** Total negative log-likelihood, nats. */
  nll: z.number().min(0),
  ppl: z.number().positive(),
  tokensPerSecond: z.number().min(0),
});
export type PerplexityReport = z.infer<typeof PerplexityReport>;

export const TasksReport = z.object({
  ...Common,
  type: z.literal('multiple_choice'),
  tasksFile: InputFile.extend({ items: z.number().int().positive() }),
  /** Whether BOS was put in front of text contexts. */
  bos: z.boolean(),
  /** Items per task evaluated (the first ones), null for all. */
  limit: z.number().int().positive().nullable(),
  tasks: z.array(Metrics.extend({ task: z.string() })),
  /** Every item counted once. */
  overall: Metrics,
});
export type TasksReport = z.infer<typeof TasksReport>;

export const EvalReport = z.discriminatedUnion('type', [PerplexityReport, TasksReport]);
export type EvalReport = z.infer<typeof EvalReport>;

const pct = (x: number): string => (100 * x).toFixed(2);
const pm = (se: number | null): string => (se === null ? '' : ` ± ${pct(se)}`);

/** The report as a few lines of text. */
export function reportToText(r: EvalReport): string {
  const head = `model    ${r.model.path} (${r.model.format}, ${r.runtime.description})`;
  if (r.type === 'perplexity') {
    return [
      head,
      `text     ${r.text.path} (${r.text.bytes} bytes, sha256 ${r.text.sha256.slice(0, 12)}…)`,
      `tokens   ${r.tokens} in ${r.windows} window${r.windows > 1 ? 's' : ''} of ${r.window} (stride ${r.stride})`,
      `nll      ${r.nll.toFixed(3)} nats, ${(r.nll / r.tokens).toFixed(4)} per token`,
      `ppl      ${r.ppl.toFixed(3)}`,
      `time     ${r.seconds.toFixed(1)} s, ${r.tokensPerSecond.toFixed(0)} tokens/s`,
    ].join('\n');
  }
  const width = Math.max(7, ...r.tasks.map((t) => t.task.length));
  const row = (name: string, m: z.infer<typeof Metrics>) =>
    `${name.padEnd(width)}  ${String(m.items).padStart(6)}  ${(pct(m.acc) + pm(m.accStderr)).padEnd(15)}  ${pct(m.accNorm)}${pm(m.accNormStderr)}`;
  return [
    head,
    `tasks    ${r.tasksFile.path} (${r.tasksFile.items} items, sha256 ${r.tasksFile.sha256.slice(0, 12)}…)${r.limit ? `, first ${r.limit} per task` : ''}${r.bos ? ', BOS before contexts' : ''}`,
    '',
    `${'task'.padEnd(width)}  ${'items'.padStart(6)}  ${'acc %'.padEnd(15)}  acc_norm %`,
    ...r.tasks.map((t) => row(t.task, t)),
    ...(r.tasks.length > 1 ? [row('overall', r.overall)] : []),
    '',
    `time     ${r.seconds.toFixed(1)} s`,
  ].join('\n');
}
