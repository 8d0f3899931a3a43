// Inference speed of the TensorFlow.js model: prefill tokens/s at 1×128 and
// 1×512, decode tokens/s with the KV cache (128 new tokens after a 32-token
// prompt), peak RSS — for a random-init nano shape, 125M and 350M.
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../engine/backend/select';
import { preset, nanoConfig } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { generate } from '../engine/generate/generate';
import type { MobileLLM } from '../engine/model/model';
import { median, peakRssMb, timeRuns, type Emit } from './harness';
import type { Suite } from './suites';

function prefillOnce(model: MobileLLM, T: number): void {
  const ids = tf.tensor2d([Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % 30000))], [1, T], 'int32');
  const cache = model.newCache();
  const logits = model.forward(ids, { cache, lastOnly: true });
  logits.dataSync();
  tf.dispose([ids, logits]);
  cache.dispose();
}

async function decodeRate(model: MobileLLM): Promise<number> {
  const prompt = Array.from({ length: 32 }, (_, i) => 3 + i * 101);
  const r = await generate(model, prompt, { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, maxNewTokens: 128, stopAtEos: false });
  return (r.ids.length - 1) / ((r.totalMs - r.firstTokenMs) / 1000);
}

async function benchShape(emit: Emit, name: string, model: MobileLLM, runs: number): Promise<void> {
  const info = await initBackend();
  const backend = describeBackend(info);
  for (const T of [128, 512]) {
    const ms = median(await timeRuns(() => prefillOnce(model, T), runs));
    emit({ what: 'prefill', backend, threads: info.threads, shape: `${name} 1x${T}`, median: +(T / (ms / 1000)).toFixed(1), unit: 'tokens/s' });
  }
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) rates.push(await decodeRate(model));
  emit({ what: 'decode', backend, threads: info.threads, shape: `${name} 32+128`, median: +median(rates).toFixed(1), unit: 'tokens/s' });
  emit({ what: 'peak_rss', backend, threads: info.threads, shape: name, median: peakRssMb(), unit: 'MB' });
}

export const suite: Suite = {
  name: 'model',
  async run(emit) {
    await initBackend();
    for (const [name, config, runs] of [
      ['nano', nanoConfig(), 5],
      ['125M', preset('125M'), 3],
      ['350M', preset('350M'), 3],
    ] as const) {
      const model = randomModel({ ...config, torchDtype: 'float32' }, 1);
      await benchShape(emit, name, model, runs);
      model.dispose();
    }
  },
};
