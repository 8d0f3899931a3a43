// The multi-threaded build of tfjs-backend-wasm, made to work under Node.
//
// tfjs-backend-wasm ships a pthreads + SIMD build but turns it off under Node
// (tfjs issue #3830): it hands the pthread worker script to Emscripten as a Blob
// URL, which Node's worker_threads cannot load, and its C++ init caps the
// thread pool at half of navigator.hardwareConcurrency. Instead of patching the
// package we build the Emscripten module ourselves through its documented hooks:
//   - locateFile      → the worker script written to a real file,
//   - mainScriptUrlOrBlob → the real path of the Emscripten glue,
//   - instantiateWasm → instantiate the .wasm ourselves, reporting 2×threads
//                       logical cores so that the halving gives `threads`.
// and hand it to the package's own BackendWasm class, so every wasm kernel
// (and the ones we add in wasm-kernels.ts) runs unchanged on N threads.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import * as wasmPkg from '@tensorflow/tfjs-backend-wasm';

const require = createRequire(import.meta.url);

/** The bits of the WebAssembly API used here (its types are not in this project's lib). */
const wasmApi = (globalThis as unknown as { WebAssembly: { instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: unknown; module: unknown }> } })
  .WebAssembly;

type EmscriptenModule = {
  PThread: { runningWorkers: { unref(): void }[] };
  cwrap: (name: string, ret: string | null, args: string[]) => (...a: unknown[]) => unknown;
  tfjs?: unknown;
};

/** Max threads the tfjs wasm build can use: it pre-creates 8 pthread workers. */
export const WASM_MAX_THREADS = 8;

function wasmOutDir(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
}

/** Writes the pthread worker script to a content-addressed file (once per version). */
function workerScriptFile(dir: string): string {
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  // The package stores the worker as a JS string whose "\n" escapes became real
  // newlines inside string literals; escape them back (as tfjs does for its Blob).
  const source = wasmWorkerContents.replace(/\n/g, '\\n');
  const hash = crypto.createHash('sha256').update(source).digest('hex').slice(0, 16);
  const file = path.join(os.tmpdir(), `mlw-tfjs-wasm-worker-${hash}.cjs`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, source);
    fs.renameSync(tmp, file);
  }
  return file;
}

/** Creates a BackendWasm running XNNPACK on `threads` threads. Throws if threads cannot start. */
export async function createThreadedWasmBackend(threads: number): Promise<wasmPkg.BackendWasm> {
  if (typeof SharedArrayBuffer === 'undefined') throw new Error('SharedArrayBuffer is not available');
  const dir = wasmOutDir();
  const mainScript = path.join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  const wasmFile = path.join(dir, 'tfjs-backend-wasm-threaded-simd.wasm');
  const workerFile = workerScriptFile(dir);
  const factory = require(mainScript) as (config: object) => Promise<EmscriptenModule>;
  const module = await factory({
    locateFile: (p: string) => (p.endsWith('.worker.js') ? workerFile : path.join(dir, p)),
    mainScriptUrlOrBlob: mainScript,
    instantiateWasm: (info: { env: Record<string, unknown> }, receive: (instance: unknown, module: unknown) => void) => {
      info.env.emscripten_num_logical_cores = () => 2 * threads;
      wasmApi.instantiate(fs.readFileSync(wasmFile), info).then((r) => receive(r.instance, r.module));
      return {};
    },
  });
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  wasmPkg.setThreadsCount(threads);
  // BackendWasm's constructor type names the package's private module type.
  const backend = new wasmPkg.BackendWasm(module as unknown as ConstructorParameters<typeof wasmPkg.BackendWasm>[0]);
  // The constructor started the thread pool. Its workers live as long as the
  // process; unref them so that they do not keep a finished process alive.
  for (const worker of module.PThread.runningWorkers) worker.unref();
  return backend;
}
