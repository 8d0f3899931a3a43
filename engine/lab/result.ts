// A lab experiment's result as it crosses the protocol: the schemas of what
// runExperiment (engine/lab/run.ts) returns, and of the experiments the Lab
// page picks from. A row is open to more metrics (zero-shot accuracy, measured
// latency…): fields beyond the ones named here pass through, and the table
// (engine/lab/report.ts) shows every metric a row carries.
//
// Imported by the protocol, hence by the renderer: zod and Node-free modules only.
import { z } from 'zod';
import { QUANT_METHODS } from '../quant/spec';

const count = z.number().int().min(0);
/** tiny: a laptop finishes the experiment; small: a GPU job. */
export const LabScale = z.enum(['tiny', 'small']);

/** Mean and sample standard deviation over seeds (0 for a single value). */
export const Stat = z.object({ mean: z.number(), spread: z.number(), n: count });

export const VariantRow = z.looseObject({
  name: z.string(),
  label: z.string(),
  params: count,
  depth: count,
  /** The pre-training run of each seed trained so far: their curves are the runs' (runs.curve). */
  runs: z.array(z.object({ seed: count, runId: z.number().int().positive(), status: z.string() })),
  valLoss: Stat.nullable(),
  ppl: Stat.nullable(),
  quantized: z.partialRecord(z.enum(QUANT_METHODS), z.object({ ppl: Stat, rise: z.number() })),
});

export const ClaimCheck = z.object({
  /** The expectation as the experiment file writes it. */
  expectation: z.record(z.string(), z.unknown()),
  text: z.string(),
  agrees: z.enum(['yes', 'no', 'within noise', 'not measured']),
  measured: z.string(),
});

export const LabResult = z.object({
  experiment: z.string(),
  question: z.string(),
  scale: LabScale,
  holdEqual: z.string(),
  budget: z.object({ steps: count, tokensPerStep: count, seeds: z.array(count), corpus: z.array(z.string()) }),
  /** False while some variant × seed is not trained yet (or was stopped): the rows are partial. */
  complete: z.boolean(),
  rows: z.array(VariantRow),
  paper: z.object({ source: z.string(), says: z.string() }),
  claims: z.array(ClaimCheck),
  evalText: z.string(),
});
export type LabResultData = z.infer<typeof LabResult>;

/** The result table as text cells, one column per metric any row carries (built by engine/lab/report.ts). */
export const LabTable = z.object({
  columns: z.array(z.object({ key: z.string(), label: z.string() })),
  rows: z.array(z.array(z.string())),
});
export type LabTable = z.infer<typeof LabTable>;

/** A plot of the result, as the report writes it (SVG text the engine drew from numbers). */
export const LabPlot = z.object({ name: z.string(), title: z.string(), svg: z.string() });
export type LabPlot = z.infer<typeof LabPlot>;

/** An experiment as the Lab page lists it. */
export const LabExperimentSummary = z.object({
  name: z.string(),
  file: z.string(),
  /** Bundled with the app, or the user's own in the home's lab folder. */
  origin: z.enum(['bundled', 'home']),
  question: z.string(),
  paper: z.object({ source: z.string(), says: z.string() }),
  holdEqual: z.string(),
  quantize: z.array(z.enum(QUANT_METHODS)),
  scales: z.partialRecord(
    LabScale,
    z.object({
      steps: count,
      tokensPerStep: count,
      seeds: z.array(count),
      variants: z.array(z.object({ name: z.string(), label: z.string(), params: count, depth: count })),
    }),
  ),
  /** Why the file does not read or a scale does not plan, if so (the experiment cannot run). */
  problem: z.string().nullable(),
});
export type LabExperimentSummary = z.infer<typeof LabExperimentSummary>;
