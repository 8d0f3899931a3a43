// A tiny lab experiment for the Lab tests: the bundled depth-vs-width with
// its question and the paper's claim, cut to two variants of about 70 thousand
// parameters (2 blocks × 48 against 4 blocks × 32, equal within 3%), two
// seeds of 32 steps on a slice of Moby-Dick, and a short held-out text.
import fs from 'node:fs';
import path from 'node:path';
import { corpusTexts } from '../../engine/train/pretrain';
import { ROOT } from './web';

export const TINY_LAB = 'tiny-depth';
export const TINY_LAB_STEPS = 32;

/** Writes the experiment as <dir>/tiny-depth.json (the home's lab folder lists it by that name) and its texts beside; returns the files. */
export function writeTinyLab(dir: string, textDir = dir): { file: string; heldOut: string } {
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(textDir, { recursive: true });
  const corpus = path.join(textDir, 'tiny-lab-corpus.txt');
  fs.writeFileSync(corpus, corpusTexts('moby-dick').texts.join('\n').slice(0, 40_000));
  const heldOut = path.join(textDir, 'tiny-lab-held-out.txt');
  fs.writeFileSync(heldOut, fs.readFileSync(path.join(ROOT, 'resources/eval/held-out.txt'), 'utf8').slice(0, 2000));
  const bundled = JSON.parse(fs.readFileSync(path.join(ROOT, 'resources/lab/depth-vs-width.json'), 'utf8'));
  const budget = {
    corpus: [corpus],
    vocabSize: 400,
    seqLen: 32,
    batchSize: 4,
    steps: TINY_LAB_STEPS,
    lr: 3e-3,
    warmupSteps: 2,
    seeds: [0, 1],
    evalEvery: 8,
    saveEvery: 8,
  };
  const plan = {
    budget,
    base: { hiddenSize: 32, intermediateSize: 112, numBlocks: 4, numHeads: 2, numKvHeads: 1 },
    variants: [
      { name: 'shallow-wide', label: '2 layers × 48', delta: { hiddenSize: 48, intermediateSize: 128, numBlocks: 2 } },
      { name: 'deep', label: '4 layers × 32' },
    ],
  };
  const experiment = {
    ...bundled,
    name: TINY_LAB,
    paper: { ...bundled.paper, expect: [{ lower: 'deep', than: 'shallow-wide' }] },
    scales: { tiny: plan, small: plan },
  };
  const file = path.join(dir, `${TINY_LAB}.json`);
  fs.writeFileSync(file, JSON.stringify(experiment, null, 2));
  return { file, heldOut };
}
