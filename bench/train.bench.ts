// Training speed on both runtimes side by side, in one run: tokens/s (min,
// median, max over the measured optimizer steps, after one warm-up step) and
// peak RSS of LoRA rank 8 on q,v, LoRA rank 16 on every linear, and full
// fine-tuning, at batch 4 × 256, for MobileLLM-125M and 350M (random weights
// in a float32 folder), through the real training loop (engine/train/trainer.ts,
// AdamW included). ONNX Runtime rows also say where the time went (the
// session's runs, building feeds, summing gradients, AdamW). Every
// configuration runs in a process of its own (`node --import tsx
// bench/train.bench.ts <folder> <config> <runtime> <steps>` prints one JSON
// line), so that its peak memory is its own. MLW_BENCH_TRAIN_SHAPES (e.g.
// "125M") and MLW_BENCH_TRAIN_RUNTIMES (e.g. "onnx") narrow the grid. Both
// rows of a configuration say how it kept activations (grad_mode: tfjs's
// tape or recompute; ONNX Runtime's graph, with "recompute per layer" when
// it recomputed, and its memory mode), which MLW_TRAIN_RECOMPUTE and
// MLW_TRAIN_MEMORY choose for ONNX Runtime.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeBackend, initBackend } from '../engine/backend/select';
import { preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { readConfig, saveModel } from '../engine/io/checkpoint';
import { quietContext } from '../engine/jobs/job';
import { RUNTIME_NAMES, type RuntimeName } from '../engine/runtime/runtime';
import { measureMatmulRate, planTraining } from '../engine/train/estimate';
import { openSteps } from '../engine/train/open-steps';
import { OnnxSteps } from '../engine/train/onnx-steps';
import { train, type MetricPoint } from '../engine/train/trainer';
import { DEFAULT_TRAIN_OPTIONS, LoraSettings } from '../engine/train/config';
import { rngFor } from '../engine/train/rng';
import { peakRssMb, spread, type Emit, type Spread } from './harness';
import type { Suite } from './suites';

const B = 4;
const T = 256;
/** Measured steps per shape (after one warm-up step). */
const SHAPES = { '125M': 6, '350M': 3 } as const;
type ShapeName = keyof typeof SHAPES;
const CONFIGS = {
  train_lora_r8_qv: { rank: 8, alpha: 16, targets: ['q', 'v'] },
  train_lora_r16_all: { rank: 16, alpha: 32, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] },
  train_full: null,
} as const;
type ConfigName = keyof typeof CONFIGS;

interface Measured extends Spread {
  mode: string;
  backend: string;
  threads: number;
  peakRssMb: number;
  estimateMb: number;
  /** ONNX Runtime: share of the measured time in each phase. */
  phases?: Record<string, number>;
}

/** One configuration in this process. */
async function measure(dir: string, name: ConfigName, runtime: RuntimeName, steps: number): Promise<Measured> {
  const config = readConfig(dir);
  const lora = CONFIGS[name] ? LoraSettings.parse({ ...CONFIGS[name], targets: [...CONFIGS[name].targets] }) : null;
  const info = await initBackend();
  const plan = planTraining(
    config,
    { method: lora ? 'lora' : 'full', loraRank: lora?.rank ?? 8, loraTargets: lora?.targets ?? ['q', 'v'], batchSize: B, seqLen: T },
    runtime === 'onnx' ? 'onnxruntime' : info.name, // the wasm heap limit is not ONNX Runtime's
    measureMatmulRate(),
  );
  const stepper = await openSteps({ runtime, baseModelDir: dir, lora, from: null, seed: 0, adamw: DEFAULT_TRAIN_OPTIONS.adamw, gradMode: plan.memory.mode });
  const random = rngFor(0, 7);
  const rows = Array.from({ length: B * (steps + 1) }, () => ({
    ids: Array.from({ length: T }, () => 3 + Math.floor(random() * (config.vocabSize - 3))),
    learn: new Uint8Array(T).fill(1),
  }));
  const rates: number[] = [];
  let phasesAtWarm: Record<string, number> | null = null;
  const log = {
    metrics: (p: MetricPoint[]) => {
      for (const m of p) {
        if (m.name !== 'tokens_per_s') continue;
        if (m.step > 1) rates.push(m.value);
        else if (stepper instanceof OnnxSteps) phasesAtWarm = { ...stepper.timings };
      }
    },
    checkpoint: async () => {},
  };
  await train(
    {
      steps: stepper,
      train: rows,
      val: [],
      padId: 0,
      options: { ...DEFAULT_TRAIN_OPTIONS, maxSteps: steps + 1, batchSize: B, evalEvery: 0, saveEvery: 0, saveEveryMinutes: 0 },
      log,
    },
    quietContext(),
  );
  let phases: Record<string, number> | undefined;
  if (stepper instanceof OnnxSteps && phasesAtWarm) {
    const spent = Object.entries(stepper.timings).map(([k, v]): [string, number] => [k, v - phasesAtWarm![k]]);
    const total = spent.reduce((n, [, v]) => n + v, 0);
    phases = Object.fromEntries(spent.map(([k, v]) => [k, +(v / total).toFixed(3)]));
  }
  await stepper.dispose();
  return {
    ...spread(rates),
    mode: stepper.mode,
    backend: runtime === 'onnx' ? `onnxruntime-node` : describeBackend(info),
    threads: info.threads,
    peakRssMb: peakRssMb(),
    estimateMb: Math.round(plan.memory.total / 2 ** 20),
    phases,
  };
}

/** A float32 folder of random weights of a preset shape. */
async function randomFolder(shape: ShapeName): Promise<string> {
  await initBackend();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mlw-train-bench-${shape}-`));
  const model = randomModel({ ...preset(shape), torchDtype: 'float32' }, 1);
  await saveModel(model, path.join(dir, 'model'));
  model.dispose();
  return dir;
}

const listed = <T extends string>(env: string | undefined, all: readonly T[]): T[] => (env ? all.filter((x) => env.split(',').includes(x)) : [...all]);

export const suite: Suite = {
  name: 'train',
  async run(emit: Emit) {
    for (const shape of listed(process.env.MLW_BENCH_TRAIN_SHAPES, Object.keys(SHAPES) as ShapeName[])) {
      const root = await randomFolder(shape);
      try {
        for (const name of Object.keys(CONFIGS) as ConfigName[]) {
          for (const runtime of listed(process.env.MLW_BENCH_TRAIN_RUNTIMES, RUNTIME_NAMES)) {
            const child = spawnSync(
              process.execPath,
              ['--import', 'tsx', fileURLToPath(import.meta.url), path.join(root, 'model'), name, runtime, String(SHAPES[shape])],
              {
                encoding: 'utf8',
                stdio: ['ignore', 'pipe', 'inherit'],
              },
            );
            if (child.status !== 0) throw new Error(`train bench ${shape} ${name} ${runtime} failed (exit ${child.status})`);
            const m = JSON.parse(child.stdout.trim().split('\n').pop()!) as Measured;
            const common = { runtime, backend: m.backend, threads: m.threads, shape: `${shape} ${B}x${T}` };
            emit({
              what: name,
              ...common,
              median: m.median,
              min: m.min,
              max: m.max,
              runs: m.runs,
              unit: 'tokens/s',
              grad_mode: m.mode,
              ...(m.phases ? { phases: m.phases } : {}),
            });
            emit({ what: `${name}_peak_rss`, ...common, median: m.peakRssMb, unit: 'MB', grad_mode: m.mode, estimate_mb: m.estimateMb });
          }
        }
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, name, runtime, steps] = process.argv.slice(2) as [string, ConfigName, RuntimeName, string];
  process.stdout.write(JSON.stringify(await measure(dir, name, runtime, Number(steps))) + '\n');
}
