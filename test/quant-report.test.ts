// The quantize job end to end: the report's contents (sizes, perplexity on
// the runtime that serves the model and the arithmetic it runs there,
// per-layer errors, shared blocks marked), its Markdown, its record in the
// store linked to the source model, and `mlw quantize` / `mlw info` as a user
// runs them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { saveModel } from '../engine/io/checkpoint';
import { randomModel } from '../engine/model/init';
import { nanoConfig } from '../engine/model/presets';
import { countParams, type MobileLLMConfig } from '../engine/model/config';
import { quietContext } from '../engine/jobs/job';
import { loadTokenizer } from '../engine/tokenizer/tokenizer';
import { openStore } from '../engine/store/open';
import { quantizeJob, type QuantizeParams } from '../engine/quant/job';
import { recordQuantization } from '../engine/quant/record';
import { NO_PERPLEXITY, QuantReport, meanSqnr, reportToMarkdown } from '../engine/quant/report';
import { main } from '../engine/cli/main';
import { goldenDir } from './helpers/golden';
import { mlwProcess as runMlw, type MlwResult as Result } from './helpers/mlw-process';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'quant');
const EVAL_TEXT = path.join(FIXTURES, 'eval.txt');

let tmp: string;
let evalIds: number[];

/** A float32 model folder with the fixture tokenizer. */
async function sourceFolder(name: string, config: MobileLLMConfig): Promise<string> {
  const dir = path.join(tmp, name);
  const model = randomModel(config, 5);
  await saveModel(model, dir);
  model.dispose();
  fs.copyFileSync(path.join(FIXTURES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return dir;
}

/** Widths 128 and 384 fit every int4 group size. */
const nano = (overrides: Partial<MobileLLMConfig> = {}) => nanoConfig({ vocabSize: 512, numBlocks: 2, intermediateSize: 384, maxPositions: 128, ...overrides });

const run = (modelDir: string, out: string, opts: Partial<QuantizeParams> & { method: string }) =>
  quantizeJob({ modelDir, outDir: path.join(tmp, out), evalIds, evalSource: EVAL_TEXT, cacheBytes: 0, ...opts }, quietContext());

let src: string;
let w8: QuantReport;
let w4: QuantReport;

beforeAll(async () => {
  await initBackend('wasm');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-quant-report-'));
  evalIds = loadTokenizer(FIXTURES).encode(fs.readFileSync(EVAL_TEXT, 'utf8'), { bos: true });
  src = await sourceFolder('nano', nano());
  w8 = await run(src, 'nano-w8', { method: 'w8' });
  w4 = await run(src, 'nano-w4', { method: 'w4', groupSize: 128 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the report', () => {
  it('follows its schema', () => {
    for (const r of [w8, w4]) expect(QuantReport.safeParse(r).success).toBe(true);
  });

  it('sizes: int8 ≈ 1/4 and int4 (groups of 128) ≈ 1/8 of float32 on disk', () => {
    const params = countParams(nano()).total;
    expect(w8.size.float32Bytes).toBe(params * 4);
    expect(w8.size.sourceBytes).toBe(fs.statSync(path.join(src, 'model.safetensors')).size);
    expect(w8.size.quantizedBytes).toBe(fs.statSync(path.join(tmp, 'nano-w8', 'model.safetensors')).size);
    expect(w8.size.ratio).toBeGreaterThan(0.25);
    expect(w8.size.ratio).toBeLessThan(0.27); // codes + one float32 scale per output channel + norms
    expect(w4.size.ratio).toBeGreaterThan(0.125);
    expect(w4.size.ratio).toBeLessThan(0.15); // + a scale and a zero point per 128 weights
  });

  it('per-layer errors: every quantized layer once, int8 far above int4, error accumulating through the model', () => {
    const names = w8.layers.map((l) => l.name);
    expect(names[0]).toBe('model.embed_tokens');
    expect(names).toHaveLength(1 + 2 * 7);
    expect(names).toContain('model.layers.1.mlp.down_proj');
    expect(w8.layers.find((l) => l.name === 'model.layers.1.mlp.down_proj')?.shape).toEqual([128, 384]);
    for (const l of w8.layers) expect(l.weight.sqnrDb).toBeGreaterThan(35);
    for (const l of w4.layers) expect(l.weight.sqnrDb).toBeLessThan(30);
    expect(meanSqnr(w8.layers, (l) => l.weight)! - meanSqnr(w4.layers, (l) => l.weight)!).toBeGreaterThan(15);
    expect(meanSqnr(w8.layers, (l) => l.output?.local)!).toBeGreaterThan(meanSqnr(w4.layers, (l) => l.output?.local)!);
    for (const r of [w8, w4]) {
      // alone, a layer loses less than the whole model has lost by the time it runs
      expect(meanSqnr(r.layers, (l) => l.output?.local)!).toBeGreaterThan(meanSqnr(r.layers, (l) => l.output?.model)!);
      const first = r.layers.find((l) => l.name === 'model.layers.0.self_attn.q_proj')!;
      const last = r.layers.find((l) => l.name === 'model.layers.1.mlp.down_proj')!;
      expect(first.output!.model.sqnrDb!).toBeGreaterThan(last.output!.model.sqnrDb!);
    }
  });

  it('perplexity before and after on the evaluation text, and the time taken', () => {
    expect(w8.perplexity!.before).toEqual(w4.perplexity!.before); // the same float model and text
    expect(w8.perplexity!.tokens).toBe(evalIds.length);
    expect(w8.perplexity!.window).toBe(128);
    expect(w8.calibration.tokens).toBe(128);
    for (const r of [w8, w4]) {
      expect(r.perplexity!.after.ppl / r.perplexity!.before.ppl).toBeGreaterThan(0.9);
      expect(r.perplexity!.after.ppl / r.perplexity!.before.ppl).toBeLessThan(1.1);
      expect(r.perplexity!.after.ppl).not.toBe(r.perplexity!.before.ppl);
      const t = r.timing;
      expect(t.totalMs).toBeGreaterThanOrEqual(t.quantizeMs + t.evaluateMs + t.saveMs);
      expect(t.quantizeMs).toBeGreaterThan(0);
    }
  });

  it('perplexity on the serving runtime (ONNX Runtime here), naming the arithmetic: weight-only layers quantize activations there', async () => {
    for (const [r, block] of [
      [w8, 32],
      [w4, 128],
    ] as const) {
      const p = r.perplexity!;
      expect(p.runtime).toMatch(/^onnx \(onnxruntime-node /);
      expect(p.arithmetic).toBe(`MatMulNBits accuracy level 4: activations quantized to int8 per block of ${block} inputs (symmetric, in the kernel)`);
      // The same weights with float32 arithmetic: activation quantization moves perplexity, a little.
      expect(p.dequantized).toBeDefined();
      expect(p.after.ppl).not.toBe(p.dequantized!.ppl);
      expect(Math.abs(p.after.ppl / p.dequantized!.ppl - 1)).toBeLessThan(0.01);
      expect(reportToMarkdown(r)).toContain(`measured on ${p.runtime}; quantized layers: ${p.arithmetic}`);
      expect(reportToMarkdown(r)).toMatch(/\| perplexity, float32 arithmetic on the dequantized weights \| \| \d+\.\d{3} \(/);
    }
    // Forced onto TensorFlow.js: dequantized weights in float32, which on ONNX Runtime is `dequantized`.
    const tfjs = await run(src, 'nano-w8-tfjs', { method: 'w8', runtime: 'tfjs' });
    expect(tfjs.perplexity!.runtime).toMatch(/^tfjs \(wasm/);
    expect(tfjs.perplexity!.arithmetic).toBe('float32 on the dequantized weights');
    expect(tfjs.perplexity!.dequantized).toBeUndefined();
    expect(tfjs.perplexity!.after.ppl / w8.perplexity!.dequantized!.ppl).toBeCloseTo(1, 4);
    expect(tfjs.perplexity!.before.ppl / w8.perplexity!.before.ppl).toBeCloseTo(1, 4);
    expect(reportToMarkdown(tfjs)).not.toContain('dequantized weights |');
  });

  it('marks shared blocks and the head in the report and its Markdown', async () => {
    const ls = await sourceFolder('nano-ls-untied', nano({ sharing: { strategy: 'immediate', repeats: 2 }, shareEmbedding: false }));
    const r = await run(ls, 'nano-ls-w8a8', { method: 'w8a8' });
    const q = r.layers.find((l) => l.name === 'model.layers.1.self_attn.q_proj')!;
    expect([q.block, q.layers]).toEqual([1, [2, 3]]);
    const embed = r.layers.find((l) => l.name === 'model.embed_tokens')!;
    expect(embed.output).toBeNull(); // untied: only looked up
    expect(r.layers.find((l) => l.name === 'lm_head')!.output).not.toBeNull();
    const md = reportToMarkdown(r);
    expect(md).toContain('# Quantization report: w8a8');
    expect(md).toContain('activations 8-bit per token min-max');
    expect(r.perplexity!.arithmetic).toBe('MatMulInteger: activations quantized to uint8 per token (min-max), int8 weights, int32 sums');
    expect(r.perplexity!.dequantized).toBeUndefined(); // W8A8 quantizes activations by design, on every runtime
    expect(md).toMatch(/\| model\.layers\.1\.self_attn\.q_proj \| layers 2, 3 \(shared\) \| \d+\.\d \| \d+\.\d \| \d+\.\d \|/);
    expect(md).toMatch(/\| model\.embed_tokens \| embedding \| \d+\.\d \| – \| – \|/);
    expect(md).toMatch(/\| lm_head \| head \|/);
    expect(md.split('\n').filter((line) => line.startsWith('| model.layers.'))).toHaveLength(14);
  });

  it('refuses an already quantized model, its own folder, and an output folder holding something else', async () => {
    await expect(run(path.join(tmp, 'nano-w8'), 'again', { method: 'w4' })).rejects.toThrow(
      /nano-w8: already quantized \(w8\); quantize the float model it was made from/,
    );
    await expect(run(src, 'nano', { method: 'w8' })).rejects.toThrow('the output folder must differ from the source model folder');
    fs.mkdirSync(path.join(tmp, 'photos'));
    fs.writeFileSync(path.join(tmp, 'photos', 'cat.jpg'), 'meow');
    await expect(run(src, 'photos', { method: 'w8' })).rejects.toThrow(/photos: already exists and is not a quantized model folder/);
    await expect(run(src, 'short', { method: 'w8', evalIds: [1] })).rejects.toThrow('the evaluation text has 1 token(s); perplexity needs at least 2');
    expect(fs.existsSync(path.join(tmp, 'short'))).toBe(false);
  });
});

describe('recording in the store', () => {
  it('links the report to the source model and the quantized model to its parent, once per folder', () => {
    const store = openStore({ home: path.join(tmp, 'home-record') });
    try {
      const a = recordQuantization(store, w8);
      const b = recordQuantization(store, w8); // the same folder quantized again
      expect(b.sourceModelId).toBe(a.sourceModelId);
      expect(b.outputModelId).toBe(a.outputModelId);
      expect(b.reportId).not.toBe(a.reportId);
      const source = store.models.get(a.sourceModelId);
      expect([source.source, source.path]).toEqual(['imported', path.resolve(src)]);
      const output = store.models.get(a.outputModelId);
      expect([output.source, output.parentModelId, output.bytes]).toEqual(['derived', a.sourceModelId, w8.size.quantizedBytes]);
      expect((output.config.quantization as { method: string }).method).toBe('w8');
      const reports = store.reports.list({ modelId: a.sourceModelId, kind: 'quantization' });
      expect(reports.map((r) => r.id)).toEqual([b.reportId, a.reportId]);
      const body = QuantReport.parse(reports[0].body);
      expect(body.output.modelId).toBe(a.outputModelId);
      expect(body.layers).toEqual(w8.layers);
    } finally {
      store.close();
    }
  });
});

function mlw(...args: string[]): Promise<Result> {
  return runMlw(['--backend', 'wasm', ...args]);
}

describe('mlw quantize', () => {
  it('quantizes, prints the report, records it; mlw info and score read the result', async () => {
    const home = path.join(tmp, 'home-cli');
    const out = path.join(tmp, 'cli-w4');
    const r = await mlw('--home', home, 'quantize', src, '--method', 'w4', '--eval-text', EVAL_TEXT, '--out', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout);
    const report = QuantReport.parse(printed);
    expect(report.quantization.group_size).toBe(128); // the largest that fits
    expect(report.output.modelId).toEqual(expect.any(Number));
    const store = openStore({ home, readonly: true });
    expect(store.reports.get(printed.reportId).modelId).toBe(printed.sourceModelId);
    store.close();

    const info = await mlw('info', out, '--json');
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout).quantization).toEqual({ method: 'w4', groupSize: 128, keepEmbeddingFp: false });
    const text = await mlw('info', out);
    expect(text.stdout).toContain('quantized    w4 (int4 weights, groups of 128, asymmetric; embedding quantized)');
    const score = await mlw('score', out, '--ids', '1,5,9,30', '--json');
    expect(score.code).toBe(0);
    expect(JSON.parse(score.stdout).logprobs).toHaveLength(3);

    // Without --eval-text the bundled held-out text is the evaluation text.
    const md = await mlw('--home', home, 'quantize', src, '--method', 'w8', '--keep-embedding-fp', '--out', path.join(tmp, 'cli-w8'));
    expect(md.code).toBe(0);
    expect(md.stdout).toContain('# Quantization report: w8');
    expect(md.stdout).toMatch(/resources\/eval\/held-out\.txt/);
    expect(md.stderr).toMatch(/recorded as report \d+ of model \d+ \(quantized model \d+\)/);
  });

  it('quantizes a folder without a tokenizer: sizes and per-layer errors on fixed ids, and says perplexity needs a tokenizer', async () => {
    const home = path.join(tmp, 'home-no-tokenizer');
    const bare = path.join(tmp, 'nano-no-tokenizer');
    fs.cpSync(src, bare, { recursive: true });
    fs.rmSync(path.join(bare, 'tokenizer.json'));
    const r = await mlw('--home', home, 'quantize', bare, '--method', 'w8', '--out', path.join(tmp, 'bare-w8'), '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = QuantReport.parse(JSON.parse(r.stdout));
    expect(report.perplexity).toBeNull();
    expect(report.calibration).toEqual({ tokens: 128, ids: 'fixed random ids' });
    expect(report.size.ratio).toBeGreaterThan(0.25);
    expect(report.size.ratio).toBeLessThan(0.27);
    expect(report.layers).toHaveLength(w8.layers.length);
    for (const l of report.layers) expect(l.output?.model.sqnrDb).toBeGreaterThan(10);

    const md = await mlw('--home', home, 'quantize', bare, '--method', 'w4', '--out', path.join(tmp, 'bare-w4'));
    expect(md.code).toBe(0);
    expect(md.stderr).toContain(`no tokenizer in ${bare}: perplexity not measured: it needs a tokenizer`);
    expect(md.stdout).toContain(`${NO_PERPLEXITY}.`);
    expect(md.stdout).toContain('(outputs on 128 fixed random token ids)');
    expect(md.stdout).not.toContain('| perplexity, as served |');
    expect(md.stdout).toMatch(/\| weights on disk \| [\d.]+ [KMG]B \| [\d.]+ [KMG]B/);
  });

  it('bad input: one line on stderr, exit 2 for usage and 1 for the rest', async () => {
    const out = path.join(tmp, 'cli-bad');
    const gqa = path.join(tmp, 'gqa');
    fs.cpSync(goldenDir('tiny-gqa'), gqa, { recursive: true });
    fs.copyFileSync(path.join(FIXTURES, 'tokenizer.json'), path.join(gqa, 'tokenizer.json'));
    const quantized = path.join(tmp, 'nano-w8');
    const cases: [string, string[], number, RegExp][] = [
      [src, ['--method', 'w3', '--eval-text', EVAL_TEXT], 2, /argument 'w3' is invalid\. Allowed choices are w8a8, w8, w4/],
      [src, ['--method', 'w8', '--eval-text', path.join(tmp, 'nope.txt')], 2, /--eval-text: .*nope\.txt not found/],
      [src, ['--method', 'w8', '--group-size', '64', '--eval-text', EVAL_TEXT], 2, /--group-size applies to --method w4 only/],
      [src, ['--method', 'w4', '--group-size', '48', '--eval-text', EVAL_TEXT], 2, /--group-size: 48 is not one of 32, 64, 128/],
      [gqa, ['--method', 'w4', '--group-size', '64', '--eval-text', EVAL_TEXT], 1, /group size 64 does not divide the input width 176 of mlp\.down_proj/],
      [quantized, ['--method', 'w8', '--eval-text', EVAL_TEXT], 1, /already quantized \(w8\)/],
    ];
    // In-process (each spawn costs seconds): main() is what bin/mlw.js runs.
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      for (const [model, args, code, message] of cases) {
        stderr.mockClear();
        stdout.mockClear();
        const rc = await main(['--backend', 'wasm', '--home', path.join(tmp, 'home-bad'), 'quantize', model, ...args, '--out', out]);
        const err = stderr.mock.calls.map((c) => String(c[0])).join('');
        expect(rc, `${args.join(' ')}: ${err}`).toBe(code);
        expect(err).toMatch(message);
        expect(
          err
            .trim()
            .split('\n')
            .filter((l) => !l.startsWith('(run mlw --help')),
        ).toHaveLength(1);
        expect(stdout).not.toHaveBeenCalled();
      }
    } finally {
      stderr.mockRestore();
      stdout.mockRestore();
    }
    expect(fs.existsSync(out)).toBe(false);
  });
});
