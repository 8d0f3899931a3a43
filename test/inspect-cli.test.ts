// `mlw inspect / share / unshare` as a user runs them: `node bin/mlw.js …`
// with a fresh home, exit codes, the schema on stdout with --json, a
// readable table and diagram without it, one-line usage errors.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { ConversionReport, InspectReport } from '../engine/inspect/schema';
import { goldenDir } from './helpers/golden';
import { mlwProcess as runMlw, type MlwResult as Result } from './helpers/mlw-process';

const QUANT = path.join(import.meta.dirname, 'fixtures', 'quant');

let tmp: string;
let home: string;

function mlw(...args: string[]): Promise<Result> {
  return runMlw(['--backend', 'cpu', '--home', home, ...args]);
}

function ok(r: Result): string {
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-inspect-cli-'));
  home = path.join(tmp, 'home');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('mlw inspect', () => {
  it('a preset: costs per strategy as JSON, no weights needed', async () => {
    const r = InspectReport.parse(JSON.parse(ok(await mlw('inspect', '125M-LS', '--json'))));
    expect(r.analysis).toBeNull();
    expect(r.costs.rows.map((x) => `${x.variant}:${x.sharing.strategy}:${x.effectiveDepth}`)).toEqual([
      'same-storage:none:30',
      'shared:immediate:60',
      'shared:repeat_all:60',
      'shared:reverse:60',
      'same-depth:none:60',
    ]);
  });

  it('a preset: a readable table and the sharing diagram of the chosen strategy', async () => {
    const out = ok(await mlw('inspect', '125M', '--strategy', 'reverse', '--repeats', '2'));
    expect(out).toMatch(/variant\s+blocks\s+layers\s+params/);
    expect(out).toMatch(/\* reverse ×2\s+30\s+60\s+124\.6M/);
    expect(out).toContain('reverse ×2: 30 blocks → 60 effective layers');
    // Block 0 runs first and last.
    expect(out).toMatch(/block 0\s+█·{58}█/);
  });

  it('a folder: costs and analysis, recorded as an inspection of the model', async () => {
    const dir = goldenDir('tiny-ls-reverse');
    const r = await mlw('inspect', dir, '--probe-ids', '1,17,33,250,9,4', '--json');
    const report = InspectReport.parse(JSON.parse(ok(r)));
    expect(report.analysis!.activations!.probe.tokens).toBe(6);
    const store = openStore({ home, readonly: true });
    try {
      const model = store.models.list().find((m) => m.path === dir)!;
      expect(model.source).toBe('imported');
      const [rec] = store.reports.list({ kind: 'inspection', modelId: model.id });
      expect(InspectReport.parse(rec.body)).toEqual(report);
    } finally {
      store.close();
    }
  });

  it('usage errors exit 2 with one line', async () => {
    for (const args of [
      ['inspect', '125M', '--probe-ids', '1,2'],
      ['inspect', '125M', '--repeats', '1'],
      ['inspect', 'no-such-thing'],
      ['inspect', '125M', '--strategy', 'sideways'],
      ['share', goldenDir('tiny-gqa'), '--out', path.join(tmp, 'x')],
    ]) {
      const r = await mlw(...args);
      expect(r.code, args.join(' ')).toBe(2);
    }
  });

  it.each([
    [['--repeats', '1000000000'], 'mlw: --repeats: 1000000000 is above the maximum 16'],
    [['--latency', '--latency-blocks', '1000000000'], 'mlw: --latency-blocks: 1000000000 is above the maximum 1024'],
    [['--runtime', 'tfjs'], 'mlw: --latency-blocks, --latency-steps and --runtime go with --latency'],
  ])('%j is refused before a schedule or a model is sized by it', async (flags, message) => {
    const r = await mlw('inspect', '125M', ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(message);
  });
});

describe('mlw share / unshare', () => {
  it('share with an evaluation text, then unshare: reports, perplexity, records', async () => {
    const src = path.join(tmp, 'gqa');
    fs.mkdirSync(src);
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(goldenDir('tiny-gqa'), f), path.join(src, f));
    fs.copyFileSync(path.join(QUANT, 'tokenizer.json'), path.join(src, 'tokenizer.json'));
    const evalText = path.join(QUANT, 'eval.txt');
    const shared = ConversionReport.parse(
      JSON.parse(
        ok(await mlw('share', src, '--strategy', 'repeat_all', '--pick', 'every-other', '--out', path.join(tmp, 'gqa-ls'), '--eval-text', evalText, '--json')),
      ),
    );
    expect(shared.output.sharing).toEqual({ strategy: 'repeat_all', repeats: 2 });
    expect(shared.blockMap).toEqual([[0], [2]]);
    expect(shared.output.modelId).not.toBeNull();
    const r = await mlw('unshare', path.join(tmp, 'gqa-ls'), '--out', path.join(tmp, 'gqa-ls-unshared'), '--eval-text', evalText);
    const out = ok(r);
    expect(out).toContain('unshare: 2 blocks, repeat_all ×2 → 4 blocks, none');
    expect(out).toContain('block map (output ← source): 0←0 1←1 2←0 3←1');
    const ppl = /perplexity ([\d.]+) → ([\d.]+)/.exec(out)!;
    expect(ppl[1]).toBe(ppl[2]);
    expect(r.stderr).toMatch(/recorded as model \d+ \(derived from model \d+\)/);
  });

  it('unshare of an unshared model fails with one line, exit 1', async () => {
    const r = await mlw('unshare', goldenDir('tiny-gqa'), '--out', path.join(tmp, 'nothing'));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('mlw: error: the model does not share its layers: nothing to unshare');
  });
});
