// Long work (training, quantization, downloads, evaluation, generation) is
// written once as a function taking a JobContext. The CLI renders its
// progress as a progress bar; the engine service streams it to the UI as
// events; both cancel it through the AbortSignal.

export interface JobProgress {
  /** What is happening now, e.g. "quantizing", "downloading model.safetensors". */
  phase?: string;
  /** Units done so far and in total (bytes, steps, layers…), for a progress bar. */
  done?: number;
  total?: number;
  unit?: string;
  /** Numbers worth showing live (loss, tokens/s, eta_s…). */
  metrics?: Record<string, number>;
  message?: string;
}

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
