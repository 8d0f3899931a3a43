// Latency of layer sharing on the runtime the chat uses (ONNX Runtime, every
// core), at the MobileLLM-125M and 350M shapes with random weights:
// the unshared model (N blocks, N layers) and each strategy ×2 (immediate,
// repeat_all, reverse: the same N blocks, 2N layers), all four sessions open
// at once and taking turns run by run (runtime/timing.ts: timeInterleaved),
// so that on this shared machine a slow spell hits them alike. Per variant:
// prefill of a 64-token prompt, and decode of one token after 64 cached ones.
// The paper's argument for immediate sharing — the block's weights are still
// in cache when it runs the second time — predicts immediate < repeat_all;
// the ratio rows give it twice: as the ratio of the two medians, and as the
// median of the per-run ratios (run k of immediate against run k of
// repeat_all, timed back to back). Rows: median, quartiles, min and max.
// Each size is measured three ways: float32 as the chat runs it (kernels
// prepack their weights, some each into its own copy, so a shared block's
// second run partly reads other memory than its first: engine/onnx/session.ts),
// float32 with prepacking off (one copy of the block, read by both of its
// layers), and w8 (int8 weights, MatMulNBits) as the chat serves a w8 model.
// MLW_BENCH_SIZES=125M runs one size. A few minutes per size.
import os from 'node:os';
import { initBackend } from '../engine/backend/select';
import { preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { MobileLLM } from '../engine/model/model';
import { NO_SHARING, SHARED_STRATEGIES, type LayerSharing } from '../engine/model/sharing';
import { exportMobileLLM } from '../engine/onnx/mobilellm';
import { quietContext } from '../engine/jobs/job';
import { quantizeModel } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import { OnnxRuntime } from '../engine/runtime/onnx';
import { summarize, timeInterleaved, timingPrompt } from '../engine/runtime/timing';
import { foreignLoad, machineCpu, ownCpuS, spread, type Emit } from './harness';
import type { Suite } from './suites';

const SIZES = ['125M', '350M'] as const;
const CONTEXT = 64;
const RUNS = { prefills: 6, steps: 48, warmup: 2 };

const VARIANTS: { label: string; sharing: LayerSharing }[] = [
  { label: 'none', sharing: NO_SHARING },
  ...SHARED_STRATEGIES.map((strategy) => ({ label: `${strategy} x2`, sharing: { strategy, repeats: 2 } })),
];

/** Median, quartiles, min and max of ms timings. */
function timingStats(ms: number[]) {
  const t = summarize(ms);
  return { ...spread(ms, 2), q1: +t.q1.toFixed(2), q3: +t.q3.toFixed(2) };
}

/** The four variants of one size, their sessions open at once: float32 with or without prepacked weights, or w8 (MatMulNBits). */
async function measure(emit: Emit, size: (typeof SIZES)[number], dtype: 'f32' | 'w8', prepack: boolean): Promise<void> {
  const base = { ...preset(size), torchDtype: 'float32' as const, sharing: NO_SHARING };
  const float = randomModel(base, 1);
  const stored = dtype === 'f32' ? float : (await quantizeModel(float, resolveSpec(base, { method: 'w8' }), quietContext(), { cacheBytes: 0 })).model;
  if (stored !== float) float.dispose();
  const runtimes: OnnxRuntime[] = [];
  try {
    for (const v of VARIANTS) {
      const model = new MobileLLM({ ...base, sharing: v.sharing }, stored.weights);
      runtimes.push(await OnnxRuntime.fromGraph(exportMobileLLM(model), { prepack }));
      model.rope.dispose(); // the only tensors the variant owns; ONNX Runtime holds its own copy of the weights
    }
  } finally {
    stored.dispose();
  }
  const backend = `${runtimes[0].describe()}${prepack ? '' : ', prepacking off'}`;
  const kind = `${dtype}${prepack ? '' : ' unpacked'}`;
  const machine = machineCpu();
  const own = ownCpuS();
  const timed = await timeInterleaved(runtimes, timingPrompt(CONTEXT, base.vocabSize), RUNS);
  const load = machine && foreignLoad(machine, ownCpuS() - own);
  const rssMb = Math.round(process.memoryUsage().rss / 2 ** 20); // the four sessions open
  for (const rt of runtimes) await rt.dispose();

  const medians = { prefill: timed.map((t) => summarize(t.prefill).median), decode: timed.map((t) => summarize(t.decode).median) };
  for (const phase of ['decode', 'prefill'] as const) {
    VARIANTS.forEach((v, i) =>
      emit({
        what: `${phase}_latency`,
        backend,
        shape: `${size} ${kind} ${v.label}, ${base.numBlocks} blocks → ${v.sharing.strategy === 'none' ? base.numBlocks : 2 * base.numBlocks} layers, ${phase === 'decode' ? `1 token after ${CONTEXT}` : `1x${CONTEXT}`}`,
        ...timingStats(timed[i][phase]),
        unit: 'ms',
        vs_unshared: +(medians[phase][i] / medians[phase][0]).toFixed(3),
      }),
    );
    const [immediate, repeatAll] = [1, 2].map((i) => timed[i][phase]);
    const paired = immediate.map((ms, k) => ms / repeatAll[k]);
    emit({
      what: `${phase}_latency_ratio`,
      backend,
      shape: `${size} ${kind} immediate x2 / repeat_all x2, runs interleaved`,
      median: +(medians[phase][1] / medians[phase][2]).toFixed(3),
      unit: 'ratio of medians',
      paired_median: +summarize(paired).median.toFixed(3),
      paired_q1: +summarize(paired).q1.toFixed(3),
      paired_q3: +summarize(paired).q3.toFixed(3),
      runs: paired.length,
    });
  }
  emit({
    what: 'conditions',
    backend,
    shape: `${size} ${kind} sharing latency`,
    median: load?.foreignShare ?? -1,
    unit: 'CPU share used by other processes',
    stealS: load?.stealS,
    wallS: load?.wallS,
    loadavg: os.loadavg().map((v) => +v.toFixed(2)),
    warmup: RUNS.warmup,
    rssMb,
  });
}

export const suite: Suite = {
  name: 'inspect',
  async run(emit) {
    await initBackend(); // the random weights are built on TensorFlow.js, then exported to ONNX Runtime
    const wanted = process.env.MLW_BENCH_SIZES?.split(',').map((s) => s.trim());
    for (const size of SIZES.filter((s) => !wanted || wanted.includes(s))) {
      await measure(emit, size, 'f32', true);
      await measure(emit, size, 'f32', false);
      await measure(emit, size, 'w8', true);
    }
  },
};
