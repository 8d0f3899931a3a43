// Quantization on the 125M shape (random init): time to quantize, resident
// weight memory, decode tokens/s (128 new tokens after a 32-token prompt) and
// prefill tokens/s (1×128) of w8a8 / w8 / w4 against float32. Targets
// (issue 6): quantize ≤ 30 s; resident weights ≤ 0.3× (w8) and ≤ 0.2× (w4) of
// float32; decode no slower than float32. The quantized models run with an
// empty dequantized-weight cache (the default: weights stay integer, decoding
// multiplies from the codes); a last row gives w4 a cache as large as the
// float32 weights, the other end of the memory/speed trade.
import { describeBackend, initBackend } from '../engine/backend/select';
import { preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { generate } from '../engine/generate/generate';
import * as tf from '@tensorflow/tfjs';
import type { MobileLLM } from '../engine/model/model';
import { quietContext } from '../engine/jobs/job';
import { quantizeModel, weightMemory } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import { median, timeRuns, type Emit } from './harness';
import type { Suite } from './suites';

const RUNS = 3;

async function decodeRate(model: MobileLLM): Promise<number> {
  const prompt = Array.from({ length: 32 }, (_, i) => 3 + i * 101);
  const r = await generate(model, prompt, { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, maxNewTokens: 128, stopAtEos: false });
  return (r.ids.length - 1) / ((r.totalMs - r.firstTokenMs) / 1000);
}

function prefillOnce(model: MobileLLM, T: number): void {
  const ids = tf.tensor2d([Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % 30000))], [1, T], 'int32');
  const cache = model.newCache();
  model.forward(ids, { cache, lastOnly: true }).dispose();
  ids.dispose();
  cache.dispose();
}

async function speed(model: MobileLLM): Promise<{ decode: number; prefill: number }> {
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) rates.push(await decodeRate(model));
  const ms = median(await timeRuns(() => prefillOnce(model, 128), RUNS));
  return { decode: median(rates), prefill: 128 / (ms / 1000) };
}

export const suite: Suite = {
  name: 'quant',
  async run(emit: Emit) {
    const info = await initBackend();
    const backend = describeBackend(info);
    const row = (what: string, shape: string, median: number, unit: string, extra: Record<string, unknown> = {}) =>
      emit({ what, backend, threads: info.threads, shape, median: +median.toFixed(3), unit, ...extra });
    const model = randomModel({ ...preset('125M'), torchDtype: 'float32' }, 1);
    const floatBytes = weightMemory(model).total;
    const f32 = await speed(model);
    row('resident_weights', '125M f32', floatBytes / 2 ** 20, 'MiB');
    row('decode', '125M f32 32+128', f32.decode, 'tokens/s');
    row('prefill', '125M f32 1x128', f32.prefill, 'tokens/s');
    for (const method of ['w8a8', 'w8', 'w4'] as const) {
      const spec = resolveSpec(model.config, { method });
      const name = method === 'w4' ? `125M w4 g${spec.groupSize}` : `125M ${method}`;
      const times: number[] = [];
      let quantized: MobileLLM | undefined;
      for (let i = 0; i < RUNS; i++) {
        quantized?.dispose();
        const t0 = performance.now();
        quantized = (await quantizeModel(model, spec, quietContext(), { cacheBytes: 0 })).model;
        times.push((performance.now() - t0) / 1000);
      }
      const q = quantized!;
      const resident = weightMemory(q).total;
      const s = await speed(q);
      row('quantize', name, median(times), 's', { target: '≤ 30' });
      row('resident_weights', name, resident / 2 ** 20, 'MiB', { vs_f32: +(resident / floatBytes).toFixed(3), target: method === 'w4' ? '≤ 0.2×' : '≤ 0.3×' });
      row('decode', `${name} 32+128`, s.decode, 'tokens/s', { vs_f32: +(s.decode / f32.decode).toFixed(2), target: '≥ 1×' });
      row('prefill', `${name} 1x128`, s.prefill, 'tokens/s', { vs_f32: +(s.prefill / f32.prefill).toFixed(2) });
      q.dispose();
    }
    const spec = resolveSpec(model.config, { method: 'w4' });
    const cached = (await quantizeModel(model, spec, quietContext(), { cacheBytes: Infinity })).model;
    const s = await speed(cached); // the first prefill fills the cache
    const name = `125M w4 g${spec.groupSize} cached`;
    row('resident_weights', name, weightMemory(cached).total / 2 ** 20, 'MiB', { vs_f32: +(weightMemory(cached).total / floatBytes).toFixed(3) });
    row('decode', `${name} 32+128`, s.decode, 'tokens/s', { vs_f32: +(s.decode / f32.decode).toFixed(2) });
    row('prefill', `${name} 1x128`, s.prefill, 'tokens/s', { vs_f32: +(s.prefill / f32.prefill).toFixed(2) });
    cached.dispose();
    model.dispose();
  },
};
