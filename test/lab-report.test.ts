// The lab result for people (engine/lab/report.ts, engine/lab/plots.ts): the
// table has a column for every metric a row carries — including ones the
// table code does not name (a row's extra Stat, number, string or object of
// them) — and one per quantization method; the Markdown puts the claim beside
// what was measured; the plots follow what the result holds, as SVG with the
// experiment's own words escaped.
import { describe, expect, it } from 'vitest';
import { labTable, labResultToMarkdown } from '../engine/lab/report';
import { labPlots } from '../engine/lab/plots';
import { LabResult as LabResultSchema } from '../engine/lab/result';
import type { LabResult, VariantRow } from '../engine/lab/run';

const stat = (mean: number, spread: number, n = 2) => ({ mean, spread, n });

function row(name: string, depth: number, ppl: number, extra: Record<string, unknown> = {}): VariantRow {
  return {
    name,
    label: `${name} <label>`,
    params: 1_234_567,
    depth,
    runs: [{ seed: 0, runId: depth, status: 'completed' }],
    valLoss: stat(4.5, 0.01),
    ppl: stat(ppl, 2.5),
    quantized: { w8a8: { ppl: stat(ppl * 1.004, 2.5), rise: 0.004 } },
    ...extra,
  } as VariantRow;
}

function result(holdEqual: string, rows: VariantRow[]): LabResult {
  return {
    experiment: 'x',
    question: 'Does it?',
    scale: 'tiny',
    holdEqual: holdEqual as LabResult['holdEqual'],
    budget: { steps: 40, tokensPerStep: 256, seeds: [0, 1], corpus: ['moby-dick'] },
    complete: true,
    rows,
    paper: { source: 'the paper', says: 'it does' },
    claims: [
      { expectation: { lower: 'b', than: 'a' }, text: 'b has a lower held-out perplexity than a', agrees: 'within noise', measured: 'b 119 ± 2 vs a 120 ± 2' },
    ],
    evalText: 'held-out.txt',
  };
}

describe('the lab table', () => {
  it('shows every metric the rows carry, named and formatted; none that no row measured', () => {
    const r = result('parameters', [
      row('a', 4, 120.5, {
        decodeMs: stat(0.25, 0.02),
        latencyRuntime: 'onnx',
        zeroShotAcc: null,
        latency: { p50: 1.5, p90: stat(2, 0.1) },
        notMeasured: null,
      }),
      row('b', 8, 119.25, { decodeMs: stat(0.3, 0.01), latencyRuntime: 'onnx', zeroShotAcc: stat(0.41, 0.012), latency: { p50: 1.75 } }),
    ]);
    const t = labTable(r);
    expect(t.columns.map((c) => c.label)).toEqual([
      'variant',
      'what',
      'params',
      'depth',
      'val loss',
      'held-out ppl',
      'decode ms',
      'latency runtime',
      'zero shot acc',
      'latency · p50',
      'latency · p90',
      'w8a8 ppl (rise)',
    ]);
    expect(t.rows[0]).toEqual([
      'a',
      'a <label>',
      '1.235M',
      '4',
      '4.500 ± 0.010',
      '120.50 ± 2.50',
      '0.250 ± 0.020',
      'onnx',
      '—',
      '1.500',
      '2.000 ± 0.100',
      '120.98 ± 2.50 (+0.40%)',
    ]);
    expect(t.rows[1].slice(8)).toEqual(['0.410 ± 0.012', '1.750', '—', '119.73 ± 2.50 (+0.40%)']);
    // What the protocol carries: the extra fields pass through its schema.
    expect(LabResultSchema.parse(r).rows[0]).toMatchObject({ decodeMs: stat(0.25, 0.02), latencyRuntime: 'onnx' });
  });

  it('writes the claim beside what was measured, and the plots as images', () => {
    const md = labResultToMarkdown(result('storage', [row('a', 4, 120), row('b', 8, 119)]), [
      { file: 'ppl-per-variant.svg', title: 'Held-out perplexity per variant' },
    ]);
    expect(md).toContain('| paper says | we measured | agrees? |');
    expect(md).toContain('| b has a lower held-out perplexity than a | b 119 ± 2 vs a 120 ± 2 | within noise |');
    expect(md).toContain('**Paper says** (the paper): it does');
    expect(md).toContain('![Held-out perplexity per variant](ppl-per-variant.svg)');
  });
});

describe('the lab plots', () => {
  const loss = (runId: number) => ({ name: 'loss', steps: [1, 2, 3, 4], values: [6, 5.5, 5.2, 5 - runId / 100], wallTimes: [0, 0, 0, 0] });

  it('draws perplexity against depth when parameters are held equal, else per variant; loss per variant; the quantization rise', () => {
    const rows = [row('a<b', 4, 120), row('c&d', 8, 119)];
    expect(labPlots(result('parameters', rows), loss).map((p) => p.name)).toEqual(['ppl-vs-depth', 'loss-vs-step', 'quantization-rise']);
    const plots = labPlots(result('storage', rows), loss);
    expect(plots.map((p) => p.name)).toEqual(['ppl-per-variant', 'loss-vs-step', 'quantization-rise']);
    for (const p of plots) {
      expect(p.svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(p.svg).not.toMatch(/a<b|c&d/); // the variant names escaped
    }
    expect(plots[1].svg).toContain('a&lt;b');
    expect(plots[2].svg).toContain('w8a8');
  });

  it('draws nothing that was not measured', () => {
    const bare = [row('a', 4, 1), row('b', 8, 1)].map((r) => ({ ...r, ppl: null, quantized: {}, runs: [] }));
    expect(labPlots(result('parameters', bare), loss)).toEqual([]);
  });
});
