// `mlw …` as a process of its own (bin/mlw.js, as a user runs it): its exit
// status and output. MLW_HOME is cleared so that a test never reaches the
// user's workbench; `env` adds or overrides variables.
import { execFile } from 'node:child_process';
import path from 'node:path';

const MLW = path.join(import.meta.dirname, '..', '..', 'bin', 'mlw.js');

export interface MlwResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function mlwProcess(args: string[], env: Record<string, string> = {}): Promise<MlwResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MLW, ...args], { env: { ...process.env, MLW_HOME: '', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
