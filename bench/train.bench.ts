// Training speed: tokens/s of full fine-tuning and of LoRA (rank 8 on q,v) at
// batch 4 × 256, for the random-init nano shape and MobileLLM-125M, through the
// real training loop (engine/train/trainer.ts, AdamW included), with the
// gradient mode a run would pick; then peak RSS (LoRA first, so its peak is
// its own).
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../engine/backend/select';
import { nanoConfig, preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import type { MobileLLMConfig } from '../engine/model/config';
import { quietContext } from '../engine/jobs/job';
import { applyLora } from '../engine/train/lora';
import { measureMatmulRate, planTraining } from '../engine/train/estimate';
import { DEFAULT_TRAIN_OPTIONS, train, type MetricPoint } from '../engine/train/trainer';
import { rngFor } from '../engine/train/rng';
import { median, peakRssMb, type Emit } from './harness';
import type { Suite } from './suites';

const B = 4;
const T = 256;

async function tokensPerSecond(config: MobileLLMConfig, method: 'full' | 'lora', steps: number): Promise<{ median: number; mode: string }> {
  const info = await initBackend();
  const plan = planTraining(config, { method, loraRank: 8, loraTargets: ['q', 'v'], batchSize: B, seqLen: T }, info.name, measureMatmulRate());
  const model = randomModel(config, 1, method === 'full' ? (t) => tf.variable(t) : undefined);
  const adapters = method === 'lora' ? applyLora(model, { rank: 8, alpha: 16, dropout: 0, targets: ['q', 'v'] }, { seed: 0 }, (t) => tf.variable(t) as unknown as tf.Tensor2D) : null;
  const trainable = new Map([...(adapters ? adapters.params() : [...model.namedParams()].map(([n, r]) => [n, r.tensor] as const))].map(([n, t]) => [n, t as tf.Variable]));
  const random = rngFor(0, 7);
  const rows = Array.from({ length: B * (steps + 1) }, () => ({
    ids: Array.from({ length: T }, () => 3 + Math.floor(random() * (config.vocabSize - 3))),
    learn: new Uint8Array(T).fill(1),
  }));
  const rates: number[] = [];
  const log = {
    metrics: (p: MetricPoint[]) => p.forEach((m) => m.name === 'tokens_per_s' && m.step > 1 && rates.push(m.value)), // step 1 warms up
    checkpoint: async () => {},
  };
  await train(
    {
      model,
      trainable,
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
  adapters?.remove();
  model.dispose();
  return { median: median(rates), mode: plan.memory.mode };
}

export const suite: Suite = {
  name: 'train',
  async run(emit: Emit) {
    const info = await initBackend();
    const backend = describeBackend(info);
    const shapes = [
      ['nano', nanoConfig(), 5],
      ['125M', { ...preset('125M'), torchDtype: 'float32' }, 3],
    ] as const;
    for (const method of ['lora', 'full'] as const) {
      for (const [name, config, steps] of shapes) {
        const r = await tokensPerSecond(config, method, steps);
        const what = method === 'lora' ? 'train_lora_r8_qv' : 'train_full';
        emit({ what, backend, threads: info.threads, shape: `${name} ${B}x${T}`, median: +r.median.toFixed(1), unit: 'tokens/s', grad_mode: r.mode });
      }
      emit({ what: `peak_rss_after_${method}`, backend, threads: info.threads, shape: `125M ${B}x${T}`, median: peakRssMb(), unit: 'MB' });
    }
  },
};
