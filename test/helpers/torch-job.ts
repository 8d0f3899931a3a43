// A Python with PyTorch for the job tests (MLW_TORCH_PYTHON, Debian's
// /usr/bin/python3 with python3-torch, or python3 on PATH), and running a job
// folder's train.py with it: one process, or torchrun with N (gloo on CPU).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The first Python that imports torch, or null. */
export function torchPython(): string | null {
  const candidates = [process.env.MLW_TORCH_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 120_000 });
    if (r.status === 0) return py;
  }
  return null;
}

/** Why the job tests cannot run here, or null; under CI (process.env.CI) a missing PyTorch is a failure, not a skip. */
export function torchMissing(py: string | null): string | null {
  if (py) return null;
  const why = 'no Python with PyTorch found (set MLW_TORCH_PYTHON, or install python3-torch)';
  if (process.env.CI) throw new Error(`job tests under CI: ${why}`);
  console.warn(`skipping the job tests: ${why}`);
  return why;
}

/** Arguments of a launch of `jobDir`'s train.py with `procs` processes (torchrun when more than one). */
function launchArgs(py: string, jobDir: string, procs: number, extra: string[]): [string, string[]] {
  const train = path.join(jobDir, 'train.py');
  if (procs === 1) return [py, [train, '--device', 'cpu', ...extra]];
  // --redirects 1 --tee 2: Debian's torch 1.13 under Python 3.11 parses only 1 and 2 there (IntFlag iteration skips 0 and 3).
  return [
    py,
    ['-m', 'torch.distributed.run', '--standalone', '--redirects', '1', '--tee', '2', `--nproc_per_node=${procs}`, train, '--device', 'cpu', ...extra],
  ];
}

const ENV = { ...process.env, OMP_NUM_THREADS: '1' };

/** Runs the job to its end; throws with its output when it fails. */
export function runJob(py: string, jobDir: string, procs = 1, extra: string[] = []): void {
  const [cmd, args] = launchArgs(py, jobDir, procs, extra);
  const r = spawnSync(cmd, args, { env: ENV, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`train.py failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
}

/** Starts the job in a process group of its own (so that a SIGKILL reaches torchrun's workers too). */
export function startJob(py: string, jobDir: string, procs = 1): ChildProcess {
  const [cmd, args] = launchArgs(py, jobDir, procs, []);
  return spawn(cmd, args, { env: ENV, stdio: 'ignore', detached: true });
}

/** The losses of metrics.jsonl in step order (the last line of each step). */
export function jobCurve(jobDir: string, name = 'loss'): number[] {
  const byStep = new Map<number, number>();
  for (const line of fs.readFileSync(path.join(jobDir, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as Record<string, number>;
    if (m[name] !== undefined) byStep.set(m.step, m[name]);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

/** The last step metrics.jsonl has reached (0 before the first). */
export function jobStep(jobDir: string): number {
  const file = path.join(jobDir, 'metrics.jsonl');
  if (!fs.existsSync(file)) return 0;
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
  try {
    return lines.length ? (JSON.parse(lines.at(-1)!) as { step: number }).step : 0;
  } catch {
    return 0; // a line being written
  }
}
