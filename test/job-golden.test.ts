// The job's PyTorch MobileLLM (resources/job/train.py) against transformers'
// golden vectors: the loss and the gradient of every unique parameter, on the
// plain and the layer-shared cases, where a shared block's gradient is the sum
// over its uses (it is one parameter run by several layers).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { goldenDir, goldenExpected, type GoldenCase } from './helpers/golden';
import { torchMissing, torchPython } from './helpers/torch-job';

const py = torchPython();
const missing = torchMissing(py);
const CASES: GoldenCase[] = ['tiny-gqa', 'tiny-untied-mha', 'tiny-ls-immediate', 'tiny-ls-repeat-all', 'tiny-ls-reverse'];
const SCRIPT = path.join(import.meta.dirname, 'python', 'check_job_golden.py');

interface CaseResult {
  case: GoldenCase;
  lossDiff: number;
  schedule: number[];
  params: string[];
  gradRelDiff: Record<string, number>;
}

describe.skipIf(missing !== null)('the job’s model on the golden cases', () => {
  it('gives transformers’ loss (1e-5) and every gradient (1e-4 of its max), a shared block’s summed over its uses', () => {
    const r = spawnSync(py!, [SCRIPT, ...CASES.map(goldenDir)], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout) as CaseResult[];
    expect(results.map((c) => c.case)).toEqual(CASES);
    for (const c of results) {
      const expected = goldenExpected(c.case);
      expect(c.schedule, c.case).toEqual(expected.effective_layer_order);
      // One parameter per unique tensor: a shared block is not copied per use.
      expect(c.params, c.case).toEqual(Object.keys(expected.params).sort());
      expect(c.lossDiff, c.case).toBeLessThan(1e-5);
      for (const [name, d] of Object.entries(c.gradRelDiff)) expect(d, `${c.case} grad.${name}`).toBeLessThan(1e-4);
    }
    const worst = Math.max(...results.flatMap((c) => Object.values(c.gradRelDiff)));
    console.log(
      `job model vs transformers: max loss diff ${Math.max(...results.map((c) => c.lossDiff)).toExponential(2)}, max grad diff ${worst.toExponential(2)} of max`,
    );
  });
});
