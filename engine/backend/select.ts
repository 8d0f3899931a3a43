// Picks the fastest TensorFlow.js backend that loads: tensorflow (tfjs-node,
// native) → wasm (XNNPACK, multi-threaded where possible) → cpu (plain JS).
// Forced with --backend / MLW_BACKEND; always reports what it chose.
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { createThreadedWasmBackend, WASM_MAX_THREADS } from './wasm-threaded';
import { registerWasmKernels } from './wasm-kernels';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendInfo {
  name: BackendName;
  /** Threads the backend computes on (1 for cpu). */
  threads: number;
  /** Why faster backends were skipped, one line each. */
  skipped: string[];
}

let current: BackendInfo | null = null;
/** Backends started in this process, so switching back does not start one twice. */
const started = new Map<BackendName, BackendInfo>();

export function parseBackendName(value: string, source: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(`${source}: unknown backend "${value}" (expected one of ${BACKEND_NAMES.join(', ')})`);
}

/** Threads for wasm: MLW_THREADS, else every core (the tfjs build has 8 workers at most). */
function wasmThreads(): number {
  const fromEnv = Number(process.env.MLW_THREADS);
  const wanted = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : (os.availableParallelism?.() ?? os.cpus().length);
  return Math.max(1, Math.min(WASM_MAX_THREADS, wanted));
}

async function tryTensorflow(): Promise<number> {
  // Optional dependency: absent on machines where its install could not download libtensorflow.
  const modName = '@tensorflow/tfjs-node';
  await import(/* @vite-ignore */ modName);
  if (!(await tf.setBackend('tensorflow'))) throw new Error('tfjs-node loaded but the tensorflow backend did not start');
  return os.availableParallelism?.() ?? os.cpus().length;
}

/**
 * Emscripten's Node glue installs process-wide 'uncaughtException' and
 * 'unhandledRejection' handlers that rethrow, so that any later error would be
 * reported as a line of the minified glue. Remove what it added during `fn`.
 */
async function withoutEmscriptenHandlers<T>(fn: () => Promise<T>): Promise<T> {
  const events = ['uncaughtException', 'unhandledRejection'] as const;
  const listeners = (e: (typeof events)[number]) => process.listeners(e as 'uncaughtException') as ((...a: unknown[]) => void)[];
  const before = events.map((e) => new Set(listeners(e)));
  try {
    return await fn();
  } finally {
    events.forEach((e, i) => {
      for (const l of listeners(e)) if (!before[i].has(l)) process.removeListener(e as 'uncaughtException', l);
    });
  }
}

async function tryWasm(): Promise<number> {
  return withoutEmscriptenHandlers(startWasm);
}

async function startWasm(): Promise<number> {
  const wasmPkg = await import('@tensorflow/tfjs-backend-wasm'); // registers the stock backend and kernels
  registerWasmKernels();
  const threads = wasmThreads();
  if (threads > 1) {
    const stock = tf.findBackendFactory('wasm');
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', () => createThreadedWasmBackend(threads));
    if (await tf.setBackend('wasm').catch(() => false)) return wasmPkg.getThreadsCount();
    // Threads could not start (no SharedArrayBuffer, workers refused): the stock single-threaded build.
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', stock);
  }
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
  return wasmPkg.getThreadsCount();
}

async function tryCpu(): Promise<number> {
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not start');
  return 1;
}

const loaders: Record<BackendName, () => Promise<number>> = {
  tensorflow: tryTensorflow,
  wasm: tryWasm,
  cpu: tryCpu,
};

/**
 * Initializes TensorFlow.js on the requested backend, or on the fastest one that
 * loads. A forced backend that fails is an error, not a silent fallback.
 */
export async function initBackend(forced?: BackendName): Promise<BackendInfo> {
  const requested = forced ?? (process.env.MLW_BACKEND ? parseBackendName(process.env.MLW_BACKEND, 'MLW_BACKEND') : undefined);
  if (current && (!requested || requested === current.name)) return current;
  const again = requested && started.get(requested);
  if (again) {
    await tf.setBackend(requested);
    current = again;
    return current;
  }
  // PROD silences tfjs's console banners and skips debug-only checks.
  tf.env().set('PROD', true);
  const order = requested ? [requested] : [...BACKEND_NAMES];
  const skipped: string[] = [];
  for (const name of order) {
    try {
      const threads = await loaders[name]();
      current = { name, threads, skipped };
      started.set(name, current);
      return current;
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      if (requested) throw new Error(`backend "${name}" could not start: ${why}`, { cause: err });
      skipped.push(`${name}: ${why}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could start (${skipped.join('; ')})`);
}

export function backendInfo(): BackendInfo {
  if (!current) throw new Error('backend not initialized: call initBackend() first');
  return current;
}

export function describeBackend(info: BackendInfo): string {
  return info.threads > 1 ? `${info.name} (${info.threads} threads)` : info.name;
}
