// The lab's experiment files: a bad file is refused in one line naming the
// key; every bundled experiment parses, builds valid configs at both scales,
// and holds equal what it says it holds equal.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countParams, effectiveDepth } from '../engine/model/config';
import { resolveSpec } from '../engine/quant/spec';
import { findExperiment, listExperiments, planVariants, readExperiment, SCALES, type Experiment } from '../engine/lab/experiment';
import { tempDir } from './helpers/train-fixtures';

const tmp = tempDir('lab-experiment');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const bundled = (name: string): Experiment => findExperiment(name).experiment;

interface ExperimentJson {
  scales: { tiny: { budget: Record<string, unknown>; variants: { delta: Record<string, unknown> }[] } };
  paper: { expect: Record<string, unknown>[] };
}

function writeVariant(mutate: (json: ExperimentJson) => void): string {
  const json = JSON.parse(fs.readFileSync(findExperiment('depth-vs-width').file, 'utf8')) as ExperimentJson;
  mutate(json);
  const file = path.join(tmp, `x-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

describe('experiment files', () => {
  it('refuses a wrong value in one line naming the key', () => {
    const file = writeVariant((j) => (j.scales.tiny.budget.steps = 'ten'));
    const err = (() => {
      try {
        readExperiment(file);
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(err).toContain('invalid "scales.tiny.budget.steps"');
    expect(err).not.toContain('\n');
  });

  it('refuses an unknown key in a variant, naming it', () => {
    const file = writeVariant((j) => (j.scales.tiny.variants[0].delta.layerz = 4));
    expect(() => readExperiment(file)).toThrow(/invalid "scales\.tiny\.variants\.0\.delta".*unknown key layerz/);
  });

  it('refuses variants whose held-equal parameters differ, naming the counts', () => {
    const e = readExperiment(writeVariant((j) => (j.scales.tiny.variants[0].delta.hiddenSize = 256)));
    expect(() => planVariants(e, 'tiny')).toThrow(/depth-vs-width \(tiny\): parameters are not equal within 10% \(shallow-wide \d+/);
  });

  it('refuses an expectation naming no variant', () => {
    const e = readExperiment(writeVariant((j) => (j.paper.expect[0].lower = 'nope')));
    expect(() => planVariants(e, 'tiny')).toThrow('names "nope", which is not a variant');
  });

  it('bundles the experiments of the issue, each parsing and building valid configs at both scales', () => {
    const names = listExperiments().map((x) => x.experiment.name);
    expect(names).toEqual(['depth-vs-width', 'embedding-sharing', 'ffn', 'heads', 'layer-sharing', 'quantization']);
    for (const { experiment: e } of listExperiments()) {
      for (const scale of SCALES) {
        const plan = planVariants(e, scale);
        expect(plan.length).toBeGreaterThanOrEqual(2);
        // Every name an expectation uses is a variant at both scales.
        for (const v of plan) expect(Number.isInteger(v.config.headDim) && v.config.headDim % 2 === 0).toBe(true);
        for (const method of e.quantize) for (const v of plan) expect(() => resolveSpec(v.config, { method })).not.toThrow();
      }
    }
  });

  it('depth vs width: 4 to 32 layers within ±10% of each other’s parameter count', () => {
    for (const scale of SCALES) {
      const plan = planVariants(bundled('depth-vs-width'), scale);
      const params = plan.map((v) => countParams(v.config).total);
      expect(Math.max(...params) / Math.min(...params)).toBeLessThan(1.1);
      const depths = plan.map((v) => effectiveDepth(v.config));
      expect(Math.max(...depths) / Math.min(...depths)).toBeGreaterThanOrEqual(5);
    }
  });

  it('layer sharing: the shared variants store exactly what the unshared one does, at twice its depth', () => {
    for (const scale of SCALES) {
      const plan = new Map(planVariants(bundled('layer-sharing'), scale).map((v) => [v.name, v.config]));
      const unshared = plan.get('unshared')!;
      for (const name of ['immediate', 'repeat-all', 'reverse']) {
        expect(countParams(plan.get(name)!).total).toBe(countParams(unshared).total);
        expect(effectiveDepth(plan.get(name)!)).toBe(2 * effectiveDepth(unshared));
      }
      const deep = plan.get('unshared-equal-depth')!;
      expect(effectiveDepth(deep)).toBe(2 * effectiveDepth(unshared));
      expect(countParams(deep).total).toBeGreaterThan(countParams(unshared).total * 1.5);
    }
  });

  it('ffn: SwiGLU, ReGLU and GeGLU differ only in hidden_act, so their parameters are exactly equal', () => {
    for (const scale of SCALES) {
      const plan = new Map(planVariants(bundled('ffn'), scale).map((v) => [v.name, v.config]));
      expect([...plan].map(([name, c]) => [name, c.hiddenAct])).toEqual([
        ['swiglu', 'silu'],
        ['reglu', 'relu'],
        ['geglu', 'gelu'],
      ]);
      const swiglu = plan.get('swiglu')!;
      for (const c of plan.values()) expect({ ...c, hiddenAct: 'silu' }).toEqual(swiglu);
    }
  });

  it('embedding sharing and heads: the compared variants within ±10% of each other’s parameter count', () => {
    for (const scale of SCALES) {
      const emb = new Map(planVariants(bundled('embedding-sharing'), scale).map((v) => [v.name, countParams(v.config)]));
      expect(emb.get('untied')!.lmHead).toBeGreaterThan(0);
      expect(emb.get('tied')!.lmHead).toBe(0);
      expect(Math.abs(emb.get('tied-more-layers')!.total / emb.get('untied')!.total - 1)).toBeLessThan(0.1);
      const heads = planVariants(bundled('heads'), scale);
      const [mha, gqa, mqa] = heads.map((v) => v.config);
      expect(mha.numKvHeads).toBe(mha.numHeads);
      expect(gqa.numKvHeads).toBeGreaterThan(1);
      expect(gqa.numKvHeads).toBeLessThan(gqa.numHeads);
      expect(mqa.numKvHeads).toBe(1);
      const p = heads.map((v) => countParams(v.config).total);
      expect(Math.max(...p) / Math.min(...p)).toBeLessThan(1.1);
    }
  });
});
