// Benchmark rows are JSON lines: {what, backend, shape, median, unit, …extra}.
// Timings are medians of repeated runs, never a single run.

export interface BenchRow {
  what: string;
  backend: string;
  shape: string;
  median: number;
  unit: string;
  [extra: string]: unknown;
}

export type Emit = (row: BenchRow) => void;

export function median(values: number[]): number {
  if (!values.length) throw new Error('median of no values');
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `fn` `warmup` times unmeasured, then `runs` times; returns each run's milliseconds. */
export async function timeRuns(fn: () => unknown | Promise<unknown>, runs: number, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
