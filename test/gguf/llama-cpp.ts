// llama.cpp for the GGUF tests: the binaries .ci/run builds from
// ../shared/vendor (MLW_LLAMA_CPP_BIN, else ../llama.cpp-build/build/bin beside
// the checkout), the source tree above them for headers, and our two small
// tools (logprobs.cpp, dequant.cpp) compiled against its libraries. Missing
// llama.cpp fails the tests under CI and skips them, saying why, elsewhere.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'vitest';

const repo = path.resolve(import.meta.dirname, '../..');
export const LLAMA_CPP_BIN = path.resolve(process.env.MLW_LLAMA_CPP_BIN ?? path.join(repo, '../llama.cpp-build/build/bin'));
/** The source tree the binaries were built from (its include/ and ggml/include/). */
const LLAMA_CPP_SRC = path.resolve(LLAMA_CPP_BIN, '../..');

const NEEDED = ['llama-perplexity', 'llama-tokenize', 'llama-quantize', 'libllama.so', 'libggml.so', 'libggml-base.so'];

/** Why llama.cpp cannot be used here, or null when it can. */
function missingReason(): string | null {
  const absent = NEEDED.filter((f) => !fs.existsSync(path.join(LLAMA_CPP_BIN, f)));
  if (absent.length) return `llama.cpp binaries not found in ${LLAMA_CPP_BIN} (${absent.join(', ')}); build them with .ci/run or set MLW_LLAMA_CPP_BIN`;
  if (!fs.existsSync(path.join(LLAMA_CPP_SRC, 'include/llama.h')))
    return `no llama.cpp headers at ${LLAMA_CPP_SRC}/include (the tree the binaries were built in)`;
  try {
    execFileSync('g++', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'g++ is not installed (needed to build test/gguf/*.cpp against libllama)';
  }
  return null;
}

export const llamaCppMissing = missingReason();

/** describe() when llama.cpp is here; under CI a failing test naming what is missing; elsewhere a skip saying why. */
export function describeWithLlamaCpp(name: string, body: () => void): void {
  if (!llamaCppMissing) describe(name, body);
  else if (process.env.CI) describe(name, () => it('finds llama.cpp', () => Promise.reject(new Error(llamaCppMissing!))));
  else describe.skip(`${name} (skipped: ${llamaCppMissing})`, body);
}

/** Compiles test/gguf/<tool>.cpp into `outDir`; returns the executable. */
export function buildTool(tool: 'logprobs' | 'dequant', outDir: string): string {
  const exe = path.join(outDir, `mlw-gguf-${tool}`);
  const libs = tool === 'logprobs' ? ['-lllama'] : ['-lggml', '-lggml-base'];
  execFileSync('g++', [
    '-O2',
    '-std=c++17',
    path.join(import.meta.dirname, `${tool}.cpp`),
    `-I${LLAMA_CPP_SRC}/include`,
    `-I${LLAMA_CPP_SRC}/ggml/include`,
    `-L${LLAMA_CPP_BIN}`,
    ...libs,
    `-Wl,-rpath,${LLAMA_CPP_BIN}`,
    '-o',
    exe,
  ]);
  return exe;
}

/** Runs a llama.cpp binary (by name, from LLAMA_CPP_BIN) or one of our tools (a path); returns stdout. */
export function runLlamaCpp(exe: string, args: string[]): string {
  const file = path.isAbsolute(exe) ? exe : path.join(LLAMA_CPP_BIN, exe);
  return execFileSync(file, args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface LlamaScores {
  ids: number[];
  logprobs: number[];
  greedy: number[];
}

/** llama.cpp's log-probs of `ids` and the `greedy` argmax tokens after them (test/gguf/logprobs.cpp). */
export function llamaScores(tool: string, model: string, ids: number[], greedy: number, tmp: string): LlamaScores {
  const file = path.join(tmp, 'ids.txt');
  fs.writeFileSync(file, ids.join(','));
  return JSON.parse(runLlamaCpp(tool, [model, 'ids', file, String(greedy)])) as LlamaScores;
}

/** llama.cpp's tokens for the text of `file` (BOS as the model says). */
export function llamaTokenize(model: string, file: string): number[] {
  const out = runLlamaCpp('llama-tokenize', ['-m', model, '-f', file, '--ids', '--log-disable']);
  return JSON.parse(out.trim().split('\n').pop()!) as number[];
}

/** llama-perplexity's final estimate on `file` with a context of `nCtx` tokens. */
export function llamaPerplexity(model: string, file: string, nCtx: number): number {
  const r = spawnSync(path.join(LLAMA_CPP_BIN, 'llama-perplexity'), ['-m', model, '-f', file, '-c', String(nCtx), '-t', '2'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const m = /Final estimate: PPL = ([\d.]+)/.exec(`${r.stdout}${r.stderr}`);
  if (r.status !== 0 || !m) throw new Error(`llama-perplexity on ${model} failed (status ${r.status}): ${r.stderr.trim().split('\n').pop()}`);
  return Number(m[1]);
}
