// Decode latency of layer sharing at the 125M shape (random weights): each
// strategy (immediate, repeat_all, reverse ×2: 30 blocks, 60 layers) against
// the unshared model of the same storage (30 blocks, 30 layers) and of the
// same effective depth (60 blocks). Full shape; a 64-token context, then 5
// rounds × 48 timed single-token steps per variant, variants taking turns
// (engine/inspect/latency.ts); medians in ms/token. About two minutes.
import { describeBackend, initBackend } from '../engine/backend/select';
import { preset } from '../engine/model/presets';
import { quietContext } from '../engine/jobs/job';
import { measureDecodeLatency } from '../engine/inspect/latency';
import type { Suite } from './suites';

export const suite: Suite = {
  name: 'inspect',
  async run(emit) {
    const info = await initBackend();
    const backend = describeBackend(info);
    const l = await measureDecodeLatency(preset('125M'), { repeats: 2, contextTokens: 64, steps: 48, rounds: 5, seed: 1 }, quietContext());
    for (const r of l.rows) {
      const label = r.variant === 'shared' ? `${r.sharing.strategy} x${r.sharing.repeats}` : `none ${r.physicalBlocks} blocks (${r.variant})`;
      emit({
        what: 'decode_latency',
        backend,
        threads: info.threads,
        shape: `125M ${label}, ${r.effectiveDepth} layers, ctx ${l.contextTokens}`,
        median: r.msPerToken,
        unit: 'ms/token',
        q1: r.q1,
        q3: r.q3,
        vs_same_storage: r.vsSameStorage,
        vs_same_depth: r.vsSameDepth,
        samples: r.samples,
      });
    }
  },
};
