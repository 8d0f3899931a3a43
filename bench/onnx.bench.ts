// Inference on ONNX Runtime against TensorFlow.js, side by side: prefill
// tokens/s at 1×128 and 1×512, decode tokens/s with the KV cache (128 new
// tokens after a 32-token prompt), resident memory — for random-init 125M and
// 350M in float32, w8a8, w8 and w4, loaded from model folders as `mlw generate`
// loads them. Each configuration runs in its own process, so that its memory
// (and its thread pools) are its own: an ONNX job never starts TensorFlow.js.
// Every timing is one warm-up run then RUNS timed runs, reported as median,
// min and max; each job ends with a `conditions` row: the share of the
// machine's CPU that other processes used while it measured (this machine is
// shared: a busy neighbour halves prefill), steal time, load average, and the
// session options. Targets for 125M on these 2-core machines (issue 9):
// float32 decode ≥ 59 tokens/s, w8 ≥ 100, w4 ≥ 120, prefill 1×512 ≥ 700 in
// float32.
// MLW_BENCH_SIZES=125M and MLW_BENCH_RUNTIMES=onnx run fewer configurations;
// MLW_BENCH_PROFILE=1 adds ONNX Runtime's kernel-time split of a decode step.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../engine/backend/select';
import { saveModel } from '../engine/io/checkpoint';
import { randomModel } from '../engine/model/init';
import { preset } from '../engine/model/presets';
import { generate } from '../engine/generate/generate';
import { quietContext } from '../engine/jobs/job';
import { quantizeModel } from '../engine/quant/quantize';
import { saveQuantizedModel } from '../engine/quant/checkpoint';
import { resolveSpec } from '../engine/quant/spec';
import { OnnxRuntime } from '../engine/runtime/onnx';
import type { InferenceRuntime, RuntimeName } from '../engine/runtime/runtime';
import { openRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { cpuSessionOptions } from '../engine/onnx/session';
import { foreignLoad, machineCpu, ownCpuS, spread, timeRuns, type BenchRow, type Emit } from './harness';
import type { Suite } from './suites';

const RUNS = 5;
const CHILD = 'MLW_BENCH_ONNX_JOB';

interface Job {
  dir: string;
  /** e.g. "125M w4 g64" */
  label: string;
  runtime: RuntimeName;
  profileDir?: string;
}

const TARGETS: Record<string, string> = {
  '125M f32 decode': '≥ 59',
  '125M w8 decode': '≥ 100',
  '125M w4 decode': '≥ 120',
  '125M f32 prefill 1x512': '≥ 700',
};

const GREEDY = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stopAtEos: false };

async function decodeRate(runtime: InferenceRuntime, newTokens = 128): Promise<number> {
  const prompt = Array.from({ length: 32 }, (_, i) => 3 + i * 101);
  const r = await generate(runtime, prompt, { ...GREEDY, maxNewTokens: newTokens });
  return (r.ids.length - 1) / ((r.totalMs - r.firstTokenMs) / 1000);
}

async function prefillOnce(runtime: InferenceRuntime, T: number): Promise<void> {
  const cache = runtime.newCache();
  await runtime.nextLogits(
    Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % 30000)),
    cache,
  );
  cache.dispose();
}

const rssMb = () => Math.round(process.memoryUsage().rss / 2 ** 20);

/** Kernel time per operator type over 32 decode steps, from ONNX Runtime's profile (a second session). */
async function decodeProfile(job: Job, row: (r: Omit<BenchRow, 'backend'>) => void): Promise<void> {
  const dir = fs.mkdtempSync(path.join(job.profileDir!, 'decode-'));
  const { runtime } = await openRuntime(readModelFolder(job.dir), { runtime: 'onnx', onnx: { profilePrefix: path.join(dir, 'profile') } });
  const session = (runtime as OnnxRuntime).session;
  await generate(runtime, [1, 2, 3, 4], { ...GREEDY, maxNewTokens: 33 });
  session.endProfiling();
  const [file] = fs.readdirSync(dir);
  const events = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
  const byOp = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name) continue;
    byOp.set(e.args.op_name, (byOp.get(e.args.op_name) ?? 0) + e.dur);
    total += e.dur;
  }
  for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    row({ what: 'decode_kernel_share', shape: `${job.label} ${op}`, median: +((100 * us) / total).toFixed(1), unit: '%' });
  }
  await runtime.dispose();
}

/** One configuration, in a child process: rows go to the parent. */
async function runJob(job: Job): Promise<void> {
  if (job.runtime === 'tfjs') await initBackend();
  const { runtime } = await openRuntime(readModelFolder(job.dir), { runtime: job.runtime });
  const backend = runtime.describe();
  const row = (r: Omit<BenchRow, 'backend'>) => process.send!({ ...r, backend });
  // Targets are for ONNX Runtime on 125M: "125M f32 decode", "125M w4 decode", …
  const target = (what: string) => (job.runtime === 'onnx' ? TARGETS[`${job.label.replace(/ g\d+$/, '')} ${what}`] : undefined);
  const withTarget = (what: string) => (target(what) ? { target: target(what) } : {});
  const machine = machineCpu();
  const own = ownCpuS();
  for (const T of [128, 512]) {
    const rates = (await timeRuns(() => prefillOnce(runtime, T), RUNS)).map((ms) => T / (ms / 1000));
    row({ what: 'prefill', shape: `${job.label} 1x${T}`, ...spread(rates), unit: 'tokens/s', ...withTarget(`prefill 1x${T}`) });
  }
  await decodeRate(runtime, 32); // warm-up: the first decode steps of a session allocate (the arena grows with the cache)
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) rates.push(await decodeRate(runtime));
  row({ what: 'decode', shape: `${job.label} 32+128`, ...spread(rates), unit: 'tokens/s', ...withTarget('decode') });
  const load = machine && foreignLoad(machine, ownCpuS() - own);
  row({
    what: 'conditions',
    shape: job.label,
    median: load?.foreignShare ?? -1,
    unit: 'CPU share used by other processes',
    stealS: load?.stealS,
    wallS: load?.wallS,
    loadavg: os.loadavg().map((v) => +v.toFixed(2)),
    warmup: 1,
    ...(runtime instanceof OnnxRuntime ? { session: cpuSessionOptions(runtime.session.threads) } : {}),
  });
  // Resident memory while generating: after the runs, once garbage (the serialized weights) is collected.
  const gc = (global as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 100));
  }
  row({ what: 'rss', shape: job.label, median: rssMb(), unit: 'MiB' });
  row({ what: 'peak_rss', shape: job.label, median: Math.round(process.resourceUsage().maxRSS / 1024), unit: 'MiB' });
  await runtime.dispose();
  if (job.profileDir && job.runtime === 'onnx') await decodeProfile(job, row);
}

function runChild(job: Job, emit: Emit): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ['--import', 'tsx', '--expose-gc'],
      env: { ...process.env, [CHILD]: JSON.stringify(job) },
    });
    child.on('message', (r) => emit(r as BenchRow));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${job.label} on ${job.runtime}: exit ${code}`))));
  });
}

/** Random-init model folders: float32, w8a8, w8, w4 (the largest group size that divides every width). */
async function makeFolders(root: string, size: string): Promise<{ dir: string; label: string }[]> {
  const model = randomModel({ ...preset(size), torchDtype: 'float32' }, 1);
  const out = [{ dir: path.join(root, `${size}-f32`), label: `${size} f32` }];
  await saveModel(model, out[0].dir);
  for (const method of ['w8a8', 'w8', 'w4'] as const) {
    const spec = resolveSpec(model.config, { method });
    const q = await quantizeModel(model, spec, quietContext(), { cacheBytes: 0 });
    const dir = path.join(root, `${size}-${method}`);
    await saveQuantizedModel(q, dir);
    q.model.dispose();
    out.push({ dir, label: method === 'w4' ? `${size} w4 g${spec.groupSize}` : `${size} ${method}` });
  }
  model.dispose();
  return out;
}

/** `all`, or those of them named in the environment variable `name` (comma-separated). */
function listed<T extends string>(name: string, all: readonly T[]): readonly T[] {
  const wanted = process.env[name]?.split(',').map((v) => v.trim());
  if (!wanted) return all;
  const unknown = wanted.filter((w) => !all.includes(w as T));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (have: ${all.join(', ')})`);
  return all.filter((v) => wanted.includes(v));
}

export const suite: Suite = {
  name: 'onnx',
  async run(emit) {
    await initBackend();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-bench-onnx-'));
    const profileDir = process.env.MLW_BENCH_PROFILE ? fs.mkdtempSync(path.join(root, 'profile-')) : undefined;
    try {
      for (const size of listed('MLW_BENCH_SIZES', ['125M', '350M'])) {
        const folders = await makeFolders(root, size);
        for (const { dir, label } of folders) {
          for (const runtime of listed('MLW_BENCH_RUNTIMES', ['onnx', 'tfjs'] as const)) await runChild({ dir, label, runtime, profileDir }, emit);
        }
        for (const { dir } of folders) fs.rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
};

if (process.env[CHILD]) {
  await runJob(JSON.parse(process.env[CHILD]) as Job);
  process.exit(0);
}
