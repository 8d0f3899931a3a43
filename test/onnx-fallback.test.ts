// Where onnxruntime-node cannot load (package missing, native library refused),
// everything still runs on TensorFlow.js and says why; asking for onnx then is
// an error. The failed import is simulated by mocking the module.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { createRuntime } from './helpers/model-runtime';
import { main } from '../engine/cli/main';
import { goldenDir } from './helpers/golden';

vi.mock('onnxruntime-node', () => {
  throw new Error('libonnxruntime.so.1: cannot open shared object file (simulated)');
});

beforeAll(async () => {
  await initBackend();
});

describe('without onnxruntime-node', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('falls back to tfjs and says why', async () => {
    const { runtime, skipped } = await createRuntime(loadModel(goldenDir('tiny-gqa')).model);
    expect(runtime.name).toBe('tfjs');
    expect(skipped).toHaveLength(1);
    // (vitest words the import error itself; the prefix is ours)
    expect(skipped[0]).toMatch(/^onnx: onnxruntime-node could not load: ./);
    // And it works: the reference greedy continuation is tested elsewhere; here a score.
    const s = await runtime.score([1, 5, 9, 33]);
    expect(s.logprobs).toHaveLength(3);
    await runtime.dispose();
  });

  it('refuses a forced onnx runtime with the reason', async () => {
    await expect(createRuntime(loadModel(goldenDir('tiny-gqa')).model, { runtime: 'onnx' })).rejects.toThrow(
      /runtime "onnx" could not start: onnxruntime-node could not load/,
    );
  });

  it('mlw score and generate report the runtime they used', async () => {
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
    const dir = goldenDir('tiny-gqa');
    expect(await main(['score', dir, '--ids', '1,5,9,33', '--json'])).toBe(0);
    expect(await main(['generate', dir, '--prompt-ids', '1,5,9', '--max-new-tokens', '3', '--temperature', '0', '--json'])).toBe(0);
    expect(await main(['score', dir, '--ids', '1,5,9,33', '--runtime', 'onnx'])).toBe(1);
    vi.restoreAllMocks();
    const [score, gen] = out.map((l) => JSON.parse(l));
    expect(score.runtime).toBe('tfjs');
    expect(gen.runtime).toBe('tfjs');
    expect(gen.ids).toHaveLength(3);
    expect(err.filter((l) => /mlw: runtime onnx: onnxruntime-node could not load: .*; using tfjs/.test(l))).toHaveLength(2);
    expect(err.at(-1)).toMatch(/mlw: error: runtime "onnx" could not start/);
  });
});
