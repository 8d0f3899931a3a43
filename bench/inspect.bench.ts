// Latency of layer sharing on the runtime the chat uses (ONNX Runtime), at
// the MobileLLM-125M and 350M shapes with random float32 weights: each
// strategy (immediate, repeat_all, reverse ×2: N blocks, 2N layers) against
// the unshared model of the same storage (N blocks, N layers) and of the same
// effective depth (2N blocks). Per variant: prefill of a 64-token prompt, and
// decode of one token after 64 cached ones; the variants take turns, round
// after round, in one process (engine/inspect/latency.ts), so the ratio
// immediate / repeat_all is measured side by side. The paper's argument for
// immediate sharing — the block's weights are still in cache when it runs the
// second time — predicts immediate < repeat_all. Rows: median with the first
// and third quartiles; the ratio rows divide the two medians.
// MLW_BENCH_SIZES=125M runs one size. About two minutes at 125M, five at 350M.
import os from 'node:os';
import { initBackend } from '../engine/backend/select';
import { preset } from '../engine/model/presets';
import { quietContext } from '../engine/jobs/job';
import { measureDecodeLatency } from '../engine/inspect/latency';
import type { LatencyRow, LatencyTiming } from '../engine/inspect/schema';
import { foreignLoad, machineCpu, ownCpuS } from './harness';
import type { Suite } from './suites';

const SIZES = ['125M', '350M'] as const;
const CONTEXT = 64;

function rowLabel(r: LatencyRow): string {
  return r.variant === 'shared' ? `${r.sharing.strategy} x${r.sharing.repeats}` : `none ${r.physicalBlocks} blocks (${r.variant})`;
}

export const suite: Suite = {
  name: 'inspect',
  async run(emit) {
    await initBackend(); // the random weights are built on TensorFlow.js, then exported to ONNX Runtime
    const wanted = process.env.MLW_BENCH_SIZES?.split(',').map((s) => s.trim());
    for (const size of SIZES.filter((s) => !wanted || wanted.includes(s))) {
      const machine = machineCpu();
      const own = ownCpuS();
      const l = await measureDecodeLatency(
        preset(size),
        { repeats: 2, contextTokens: CONTEXT, steps: 32, prefills: 3, rounds: size === '125M' ? 4 : 3, seed: 1, runtime: 'onnx' },
        quietContext(),
      );
      const load = machine && foreignLoad(machine, ownCpuS() - own);
      const backend = l.runtimeDescription;
      const timingRow = (what: string, r: LatencyRow, t: LatencyTiming, shape: string) =>
        emit({
          what,
          backend,
          shape: `${size} f32 ${rowLabel(r)}, ${r.effectiveDepth} layers, ${shape}`,
          median: t.ms,
          unit: 'ms',
          q1: t.q1,
          q3: t.q3,
          runs: t.samples,
          vs_same_storage: t.vsSameStorage,
          vs_same_depth: t.vsSameDepth,
        });
      for (const r of l.rows) timingRow('decode_latency', r, r.decode, `1 token after ${CONTEXT}`);
      for (const r of l.rows) timingRow('prefill_latency', r, r.prefill, `1x${CONTEXT}`);
      const byStrategy = (s: string) => l.rows.find((r) => r.variant === 'shared' && r.sharing.strategy === s)!;
      const [immediate, repeatAll] = [byStrategy('immediate'), byStrategy('repeat_all')];
      for (const phase of ['decode', 'prefill'] as const) {
        emit({
          what: `${phase}_latency_ratio`,
          backend,
          shape: `${size} f32 immediate x2 / repeat_all x2 (same run)`,
          median: +(immediate[phase].ms / repeatAll[phase].ms).toFixed(3),
          unit: 'ratio of medians',
          immediate_ms: immediate[phase].ms,
          repeat_all_ms: repeatAll[phase].ms,
        });
      }
      emit({
        what: 'conditions',
        backend,
        shape: `${size} sharing latency`,
        median: load?.foreignShare ?? -1,
        unit: 'CPU share used by other processes',
        stealS: load?.stealS,
        wallS: load?.wallS,
        loadavg: os.loadavg().map((v) => +v.toFixed(2)),
        rounds: l.rounds,
        warmup: 'each turn opens its session and runs 2 untimed prefill + decode steps',
      });
    }
  },
};
