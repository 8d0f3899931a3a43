// Benchmark rows are JSON lines: {what, backend, shape, median, unit, …extra}.
// Timings are medians of repeated runs, never a single run; rows that come
// from repeated runs also carry min, max and runs (the spread). A
// `conditions` row says what else the machine was doing meanwhile: the share
// of its CPU time other processes used (this machine is shared), steal time,
// load average.
import fs from 'node:fs';
import os from 'node:os';

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

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number;
}

/** Median, min and max of repeated measurements, rounded to `digits` decimals. */
export function spread(values: number[], digits = 1): Spread {
  const round = (v: number) => +v.toFixed(digits);
  return { median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)), runs: values.length };
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

/** CPU seconds the whole machine has spent busy and stolen (by the hypervisor) since boot; null off Linux. */
export interface MachineCpu {
  busyS: number;
  stealS: number;
  atMs: number;
}

/** Clock ticks per second of /proc/stat (USER_HZ: 100 on every Linux ABI Node runs on). */
const USER_HZ = 100;

export function machineCpu(): MachineCpu | null {
  let line: string;
  try {
    line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  } catch {
    return null;
  }
  // cpu user nice system idle iowait irq softirq steal …
  const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
  return { busyS: (user + nice + system + irq + softirq + steal) / USER_HZ, stealS: steal / USER_HZ, atMs: performance.now() };
}

export interface ForeignLoad {
  /** Share of the machine's CPU time (all cores) that other processes used. */
  foreignShare: number;
  stealS: number;
  wallS: number;
}

/** What other processes used between `start` and now, given the CPU seconds our own processes used meanwhile. */
export function foreignLoad(start: MachineCpu, ownCpuS: number): ForeignLoad | null {
  const end = machineCpu();
  if (!end) return null;
  const wallS = (end.atMs - start.atMs) / 1000;
  const foreign = Math.max(0, end.busyS - start.busyS - ownCpuS);
  return {
    foreignShare: +(foreign / (wallS * os.availableParallelism())).toFixed(3),
    stealS: +(end.stealS - start.stealS).toFixed(1),
    wallS: +wallS.toFixed(1),
  };
}

/** CPU seconds this process has used so far. */
export function ownCpuS(): number {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1e6;
}

/** The machine, for a conditions row: CPU model, cores, memory, Node, load average. */
export function hostDescription(): Record<string, unknown> {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    loadavg: os.loadavg().map((v) => +v.toFixed(2)),
  };
}
