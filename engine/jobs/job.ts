// Long work (training, quantization, downloads, evaluation, generation) is
// written once as a function taking a JobContext. The CLI renders its
// progress as a progress bar; the engine service streams it to the UI as
// events; both cancel it through the AbortSignal.
//
// Imported by the protocol, hence by the renderer: zod and Node-free modules only.
import { z } from 'zod';

export const JobProgress = z.object({
  /** What is happening now, e.g. "quantizing", "downloading model.safetensors". */
  phase: z.string().optional(),
  /** Units done so far and in total (bytes, steps, layers…), for a progress bar. */
  done: z.number().optional(),
  total: z.number().optional(),
  unit: z.string().optional(),
  /** Numbers worth showing live (loss, tokens/s, eta_s…). */
  metrics: z.record(z.string(), z.number()).optional(),
  message: z.string().optional(),
  /** The run the job's work records, once it has one (the job's snapshot keeps it from then on). */
  runId: z.number().int().positive().optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

export interface JobContext {
  signal: AbortSignal;
  progress(p: JobProgress): void;
}

/** Thrown by job code that noticed its signal was aborted. */
export class CancelledError extends Error {
  override name = 'CancelledError';
  constructor(message = 'cancelled') {
    super(message);
  }
}

export function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw new CancelledError();
}

/** A context for code run outside any job (tests, scripts). */
export function quietContext(signal: AbortSignal = new AbortController().signal): JobContext {
  return { signal, progress: () => {} };
}
