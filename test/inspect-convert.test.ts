// Conversion (engine/inspect/convert.ts): unshare keeps the logits of every
// golden layer-shared case; share equals a model built by hand from the
// checkpoint (every other block, or the mean of each pair); round trips; and
// the job end to end: checkpoint folders that load back, perplexity before and
// after, and the records in the store.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { SafetensorsFile } from '../engine/io/safetensors';
import { toFloat32 } from '../engine/io/raw-tensor';
import { MobileLLM, weightsFromCheckpoint } from '../engine/model/model';
import { TokenEmbedding } from '../engine/model/embedding';
import { SHARED_STRATEGIES, type SharedStrategy } from '../engine/model/sharing';
import { quietContext } from '../engine/jobs/job';
import { loadTokenizer } from '../engine/tokenizer/tokenizer';
import { openStore } from '../engine/store/open';
import { convertJob, shareModel, unshareModel } from '../engine/inspect/convert';
import { recordConversion } from '../engine/inspect/record';
import { ConversionReport, type BlockPick } from '../engine/inspect/schema';
import { goldenDir, goldenTensors, maxAbsDiff, type GoldenCase } from './helpers/golden';
import { TEST_BACKENDS } from './helpers/backends';

const LS_CASES: GoldenCase[] = ['tiny-ls-immediate', 'tiny-ls-repeat-all', 'tiny-ls-reverse'];
const PICKS: BlockPick[] = ['every-other', 'average'];

function goldenIds(name: GoldenCase): tf.Tensor2D {
  const { values, shape } = goldenTensors(name).ids();
  return tf.tensor2d(values, shape as [number, number], 'int32');
}

function logits(m: MobileLLM, ids: tf.Tensor2D): Float32Array {
  const out = m.forward(ids);
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return v;
}

/** Every parameter of `a` equals `b`'s, element for element. */
function expectSameParams(a: MobileLLM, b: MobileLLM): void {
  const pa = a.namedParams();
  const pb = b.namedParams();
  expect([...pa.keys()]).toEqual([...pb.keys()]);
  for (const [name, ref] of pa) expect(maxAbsDiff(ref.tensor.dataSync(), pb.get(name)!.tensor.dataSync()), name).toBe(0);
}

/**
 * The expected result of sharing tiny-gqa (4 blocks), built from its
 * checkpoint by hand: block i is block 2i, or (block 2i + block 2i+1) / 2
 * computed element by element in float32.
 */
function handShared(strategy: SharedStrategy, pick: BlockPick): MobileLLM {
  const dir = goldenDir('tiny-gqa');
  const src = loadModel(dir).model;
  const config = { ...src.config, numBlocks: src.config.numBlocks / 2, sharing: { strategy, repeats: 2 } };
  src.dispose();
  const st = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  const read = (name: string) => {
    const raw = st.read(name);
    return { values: toFloat32(raw, name), shape: raw.shape };
  };
  const get = (name: string) => {
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
    if (!m) return tf.tensor(read(name).values, read(name).shape);
    const i = Number(m[1]);
    const a = read(`model.layers.${2 * i}.${m[2]}`);
    if (pick === 'every-other') return tf.tensor(a.values, a.shape);
    const b = read(`model.layers.${2 * i + 1}.${m[2]}`).values;
    return tf.tensor(
      a.values.map((x, j) => Math.fround(x + b[j]) / 2),
      a.shape,
    );
  };
  try {
    return new MobileLLM(config, weightsFromCheckpoint(config, get));
  } finally {
    st.close();
  }
}

describe.each(TEST_BACKENDS)('backend %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  describe.each(LS_CASES)('unshare %s', (name) => {
    it('gives one block per effective layer, a copy of the block that layer ran, and the same logits', () => {
      const before = tf.memory().numTensors;
      const m = loadModel(goldenDir(name)).model;
      const ids = goldenIds(name);
      const u = unshareModel(m);
      expect(u.config.numBlocks).toBe(m.numLayers);
      expect(u.config.sharing).toEqual({ strategy: 'none', repeats: 1 });
      expect(u.schedule).toEqual([...Array(m.numLayers).keys()]);
      const pm = m.namedParams();
      for (const [pname, ref] of u.namedParams()) {
        const layer = /^model\.layers\.(\d+)\.(.+)$/.exec(pname);
        const from = layer ? `model.layers.${m.schedule[Number(layer[1])]}.${layer[2]}` : pname;
        expect(maxAbsDiff(ref.tensor.dataSync(), pm.get(from)!.tensor.dataSync()), pname).toBe(0);
      }
      expect(maxAbsDiff(logits(u, ids), logits(m, ids))).toBe(0);
      u.dispose();
      m.dispose();
      ids.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  describe.each(SHARED_STRATEGIES)('share tiny-gqa with %s', (strategy) => {
    it.each(PICKS)('%s: equals the model built by hand from the checkpoint', (pick) => {
      const m = loadModel(goldenDir('tiny-gqa')).model;
      const ids = goldenIds('tiny-gqa');
      const s = shareModel(m, strategy, pick);
      const want = handShared(strategy, pick);
      expect(s.config).toEqual(want.config);
      expect(s.schedule).toEqual(want.schedule);
      expectSameParams(s, want);
      expect(maxAbsDiff(logits(s, ids), logits(want, ids))).toBe(0);
      // Round trip: unsharing the shared model keeps its function.
      const u = unshareModel(s);
      expect(maxAbsDiff(logits(u, ids), logits(s, ids))).toBe(0);
      tf.dispose(ids);
      for (const x of [m, s, want, u]) x.dispose();
    });
  });

  it.each(PICKS)('round trip: unshare then share (immediate, %s) gives tiny-ls-immediate back', (pick) => {
    const m = loadModel(goldenDir('tiny-ls-immediate')).model;
    const back = shareModel(unshareModel(m), 'immediate', pick);
    expect(back.config).toEqual(m.config);
    expectSameParams(back, m);
    back.dispose();
    m.dispose();
  });

  it('refuses what it cannot do', () => {
    const shared = loadModel(goldenDir('tiny-ls-reverse')).model;
    const odd = loadModel(goldenDir('tiny-untied-mha')).model; // 3 blocks
    expect(() => shareModel(shared, 'immediate', 'every-other')).toThrow(/already shares/);
    expect(() => shareModel(odd, 'immediate', 'every-other')).toThrow(/even number of blocks/);
    expect(() => unshareModel(odd)).toThrow(/nothing to unshare/);
    shared.dispose();
    odd.dispose();
  });

  it('keeps an untied head untied (a copy of it)', () => {
    const m = loadModel(goldenDir('tiny-ls-immediate')).model;
    const ids = goldenIds('tiny-ls-immediate');
    const head = new TokenEmbedding(tf.mul(m.weights.embed.wT, 0.5) as tf.Tensor2D);
    const untied = new MobileLLM({ ...m.config, shareEmbedding: false }, { ...m.weights, head });
    const u = unshareModel(untied);
    expect(u.weights.head).not.toBe(u.weights.embed);
    expect(maxAbsDiff(u.namedParams().get('lm_head.weight')!.tensor.dataSync(), head.wT.dataSync())).toBe(0);
    expect(maxAbsDiff(logits(u, ids), logits(untied, ids))).toBe(0);
    u.dispose();
    untied.rope.dispose();
    head.dispose();
    m.dispose();
    ids.dispose();
  });
});

describe('convertJob and the store', () => {
  const QUANT = path.join(import.meta.dirname, 'fixtures', 'quant');
  const EVAL_TEXT = path.join(QUANT, 'eval.txt');
  let tmp: string;
  let evalText: { ids: number[]; source: string };

  /** A golden case with the fixture tokenizer (vocabulary 512), as a user's folder. */
  function folder(name: GoldenCase): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(goldenDir(name), f), path.join(dir, f));
    fs.copyFileSync(path.join(QUANT, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    return dir;
  }

  beforeAll(async () => {
    await initBackend('cpu');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-inspect-convert-'));
    evalText = { ids: loadTokenizer(QUANT).encode(fs.readFileSync(EVAL_TEXT, 'utf8'), { bos: true }), source: EVAL_TEXT };
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('share then unshare: folders that load back with the same logits, perplexity measured, recorded as derived models', async () => {
    const src = folder('tiny-gqa');
    const sharedDir = path.join(tmp, 'gqa-shared');
    const unsharedDir = path.join(tmp, 'gqa-unshared');
    const ctx = quietContext();
    const shared = await convertJob(
      { modelDir: src, outDir: sharedDir, conversion: { operation: 'share', strategy: 'reverse', pick: 'average' }, evalText },
      ctx,
    );
    const unshared = await convertJob({ modelDir: sharedDir, outDir: unsharedDir, conversion: { operation: 'unshare' }, evalText }, ctx);

    expect(ConversionReport.safeParse(shared).success).toBe(true);
    expect(shared.blockMap).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(shared.output).toMatchObject({ numBlocks: 2, sharing: { strategy: 'reverse', repeats: 2 }, dtype: 'F32', format: 'safetensors' });
    expect(unshared.blockMap).toEqual([[0], [1], [1], [0]]);
    expect(unshared.output.params).toBeGreaterThan(unshared.source.params);
    // Sharing changes the function; unsharing does not.
    expect(shared.perplexity!.after.ppl).not.toBeCloseTo(shared.perplexity!.before.ppl, 3);
    expect(unshared.perplexity!.before.ppl).toBeCloseTo(shared.perplexity!.after.ppl, 4);
    expect(unshared.perplexity!.after.ppl).toBeCloseTo(unshared.perplexity!.before.ppl, 4);

    // The folders are ordinary checkpoints, with the tokenizer alongside.
    expect(fs.existsSync(path.join(unsharedDir, 'tokenizer.json'))).toBe(true);
    const ids = goldenIds('tiny-gqa');
    const fromDisk = loadModel(sharedDir).model;
    const inMemory = shareModel(loadModel(src).model, 'reverse', 'average');
    expect(maxAbsDiff(logits(fromDisk, ids), logits(inMemory, ids))).toBe(0);
    const unsharedFromDisk = loadModel(unsharedDir).model;
    expect(unsharedFromDisk.config.sharing.strategy).toBe('none');
    expect(maxAbsDiff(logits(unsharedFromDisk, ids), logits(fromDisk, ids))).toBe(0);
    for (const m of [fromDisk, inMemory, unsharedFromDisk]) m.dispose();
    ids.dispose();

    const store = openStore({ home: path.join(tmp, 'home') });
    try {
      const a = recordConversion(store, shared);
      const b = recordConversion(store, unshared);
      const [srcRow, sharedRow, unsharedRow] = store.models.list();
      expect(srcRow).toMatchObject({ source: 'imported', path: src });
      expect(sharedRow).toMatchObject({ source: 'derived', path: sharedDir, parentModelId: srcRow.id, paramCount: shared.output.params });
      expect(unsharedRow).toMatchObject({ source: 'derived', path: unsharedDir, parentModelId: sharedRow.id });
      expect(b.report.source.modelId).toBe(sharedRow.id);
      const report = store.reports.get(a.reportId);
      expect(report).toMatchObject({ kind: 'conversion', modelId: sharedRow.id });
      expect(ConversionReport.parse(report.body)).toEqual(a.report);
    } finally {
      store.close();
    }
  });

  it('refuses an output folder that is the source or not empty', async () => {
    const src = folder('tiny-ls-immediate');
    const conversion = { operation: 'unshare' } as const;
    await expect(convertJob({ modelDir: src, outDir: src, conversion }, quietContext())).rejects.toThrow(/must differ/);
    const busy = path.join(tmp, 'busy');
    fs.mkdirSync(busy);
    fs.writeFileSync(path.join(busy, 'x'), '');
    await expect(convertJob({ modelDir: src, outDir: busy, conversion }, quietContext())).rejects.toThrow(/not empty/);
  });
});
