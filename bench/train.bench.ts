// Training speed: tokens/s of full fine-tuning and of LoRA (rank 8 on q,v) at
// batch 4 × 256, for the random-init nano shape and MobileLLM-125M, through the
// real training loop (engine/train/trainer.ts, AdamW included) with the
// gradient mode a run would pick, and the peak RSS of each. Every
// configuration runs in a process of its own (`node --import tsx
// bench/train.bench.ts <shape> <method> <steps>` prints one JSON line), so
// that its peak memory is its own and one run's wasm heap cannot crowd the next.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../engine/backend/select';
import { nanoConfig, preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { quietContext } from '../engine/jobs/job';
import { applyLora } from '../engine/train/lora';
import { trainable } from '../engine/train/backprop';
import { measureMatmulRate, planTraining } from '../engine/train/estimate';
import { train, type MetricPoint } from '../engine/train/trainer';
import { DEFAULT_TRAIN_OPTIONS, LoraSettings } from '../engine/train/config';
import { rngFor } from '../engine/train/rng';
import { median, peakRssMb, type Emit } from './harness';
import type { Suite } from './suites';

const B = 4;
const T = 256;
const SHAPES = { nano: { config: nanoConfig(), steps: 5 }, '125M': { config: { ...preset('125M'), torchDtype: 'float32' }, steps: 3 } };
type ShapeName = keyof typeof SHAPES;

interface Measured {
  median: number;
  mode: string;
  backend: string;
  threads: number;
  peakRssMb: number;
  estimateMb: number;
}

/** One configuration in this process: `steps` measured optimizer steps after one warm-up step. */
async function measure(shape: ShapeName, method: 'full' | 'lora'): Promise<Measured> {
  const { config, steps } = SHAPES[shape];
  const info = await initBackend();
  const plan = planTraining(config, { method, loraRank: 8, loraTargets: ['q', 'v'], batchSize: B, seqLen: T }, info.name, measureMatmulRate());
  const model = randomModel(config, 1, method === 'full' ? trainable : undefined);
  const adapters =
    method === 'lora' ? applyLora(model, LoraSettings.parse({ rank: 8, alpha: 16, dropout: 0, targets: ['q', 'v'] }), { seed: 0 }, trainable) : null;
  const params = adapters ? adapters.params() : new Map([...model.namedParams()].map(([n, r]) => [n, r.tensor]));
  const random = rngFor(0, 7);
  const rows = Array.from({ length: B * (steps + 1) }, () => ({
    ids: Array.from({ length: T }, () => 3 + Math.floor(random() * (config.vocabSize - 3))),
    learn: new Uint8Array(T).fill(1),
  }));
  const rates: number[] = [];
  const log = {
    metrics: (p: MetricPoint[]) => p.forEach((m) => m.name === 'tokens_per_s' && m.step > 1 && rates.push(m.value)),
    checkpoint: async () => {},
  };
  await train(
    {
      model,
      trainable: new Map([...params].map(([n, t]) => [n, t as tf.Variable])),
      adapters,
      baseModelDir: '',
      train: rows,
      val: [],
      padId: 0,
      options: { ...DEFAULT_TRAIN_OPTIONS, maxSteps: steps + 1, batchSize: B, evalEvery: 0, saveEvery: 0, saveEveryMinutes: 0 },
      gradMode: plan.memory.mode,
      log,
    },
    quietContext(),
  );
  return {
    median: median(rates),
    mode: plan.memory.mode,
    backend: describeBackend(info),
    threads: info.threads,
    peakRssMb: peakRssMb(),
    estimateMb: Math.round(plan.memory.total / 2 ** 20),
  };
}

export const suite: Suite = {
  name: 'train',
  async run(emit: Emit) {
    for (const method of ['lora', 'full'] as const) {
      for (const shape of Object.keys(SHAPES) as ShapeName[]) {
        const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), shape, method], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        if (child.status !== 0) throw new Error(`train bench ${shape} ${method} failed (exit ${child.status})`);
        const m = JSON.parse(child.stdout.trim().split('\n').pop()!) as Measured;
        const what = method === 'lora' ? 'train_lora_r8_qv' : 'train_full';
        const common = { backend: m.backend, threads: m.threads, shape: `${shape} ${B}x${T}` };
        emit({ what, ...common, median: +m.median.toFixed(1), unit: 'tokens/s', grad_mode: m.mode });
        emit({ what: `${what}_peak_rss`, ...common, median: m.peakRssMb, unit: 'MB', estimate_mb: m.estimateMb });
      }
    }
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [shape, method] = process.argv.slice(2) as [ShapeName, 'full' | 'lora'];
  process.stdout.write(JSON.stringify(await measure(shape, method)) + '\n');
}
