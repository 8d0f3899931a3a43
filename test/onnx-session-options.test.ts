// The CPU session options (engine/onnx/session.ts cpuSessionOptions) reach
// ONNX Runtime under the config keys they mean: the bounded spin of the
// intra-op threads arrives as session.intra_op.spin_duration_us (ONNX Runtime
// warns, on the process's stderr, about a value it cannot use — which is how
// a child process shows the key got there).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { INTRA_OP_SPIN_US, cpuSessionOptions } from '../engine/onnx/session';

const CHILD = path.join(import.meta.dirname, 'fixtures', 'onnx-session', 'open-with-spin.ts');

async function openInChild(spin?: string): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['--import', 'tsx', CHILD, ...(spin === undefined ? [] : [spin])], {
    cwd: path.join(import.meta.dirname, '..'),
  });
}

describe('cpuSessionOptions', () => {
  it('one inter-op thread, sequential, every optimization, the intra-op threads asked for, spinning bounded', () => {
    const o = cpuSessionOptions(3);
    expect(o).toMatchObject({
      intraOpNumThreads: 3,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
    });
    expect(o.extra).toEqual({ session: { intra_op: { spin_duration_us: String(INTRA_OP_SPIN_US) } } });
  });

  it('the spin duration reaches ONNX Runtime as session.intra_op.spin_duration_us', async () => {
    const ours = await openInChild();
    expect(ours.stdout.trim()).toBe('ran');
    expect(ours.stderr).not.toMatch(/spin_duration_us/);
    const bad = await openInChild('soon');
    expect(bad.stdout.trim()).toBe('ran');
    expect(bad.stderr).toMatch(/Invalid value for session\.intra_op\.spin_duration_us: "soon"/);
  }, 60_000);
});
