// What the crash writer (store-crash-writer.ts) writes, so that the test can
// check every batch it finds: metric batches of BATCH_STEPS steps × METRICS,
// each in one append, with values that follow from the step alone.
export const BATCH_STEPS = 200;
export const METRICS = ['loss', 'lr'] as const;
/** Checkpoints kept per run; older ones are removed, as a trainer keeping the last K does. */
export const KEEP_CHECKPOINTS = 3;

export function metricValue(name: (typeof METRICS)[number], step: number): number {
  return name === 'loss' ? 5 / (1 + step / 100) : 1e-4 * (1 - step / 1e6);
}
