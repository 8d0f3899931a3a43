// Spawning the CLI for the training tests, and watching a run's progress in
// the store from outside (read-only, next to the writing process).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openStore } from '../../engine/store/open';
import { DB_FILE } from '../../engine/store/home';
import { main } from '../../engine/cli/main';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD = path.join(ROOT, 'test/helpers/train-child.ts');

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function spawnMlw(args: string[]): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Finished>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/** The last step run `runId` recorded a loss for in the store of `home` (0 when there is none yet). */
function latestStep(home: string, runId: number): number {
  // Opening a missing database read-only would create it, racing the child that is creating it.
  if (!fs.existsSync(path.join(home, DB_FILE))) return 0;
  try {
    const store = openStore({ home, readonly: true });
    try {
      return store.metrics.latest(runId).loss?.step ?? 0;
    } finally {
      store.close();
    }
  } catch {
    return 0; // not migrated yet
  }
}

/** Polls until run `runId` has recorded a loss at step ≥ `step`; fails if the child ends first. */
export async function waitForStep(home: string, runId: number, step: number, done: Promise<Finished>): Promise<number> {
  let ended = false;
  void done.then(() => (ended = true));
  for (;;) {
    const latest = latestStep(home, runId);
    if (latest >= step) return latest;
    if (ended) throw new Error(`the training process ended before step ${step}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs the mlw CLI in this process, capturing what it prints (much faster than a process per call). */
export async function mlwHere(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const write = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}
