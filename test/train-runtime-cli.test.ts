// The training runtime choice on the command line: `--runtime` of mlw finetune
// and mlw pretrain reaches the run's stored config, a bad value is refused in
// one line, the help states the default, and `mlw runs` / `runs show` name the
// runtime of each training run (runs from before the choice: TensorFlow.js).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { mlwHere } from './helpers/train-spawn';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('train-runtime-cli');
const model = tinyModelDir(tmp);
const data = writeJsonl(path.join(tmp, 'train.jsonl'), arithmeticChats(8));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tinyFinetune = (home: string, runtime: string) =>
  mlwHere(['--home', home, 'finetune', model, '--data', data, '--max-steps', '1', '--batch-size', '2', '--eval-every', '0', '--runtime', runtime, '--json']);

/** The runtime each run's stored config records. */
function storedRuntimes(home: string): unknown[] {
  const store = openStore({ home, readonly: true });
  try {
    return store.runs
      .list({})
      .sort((a, b) => a.id - b.id)
      .map((r) => r.config.runtime);
  } finally {
    store.close();
  }
}

/** The RUNTIME column of `mlw runs`, by run id. */
function runtimeColumn(table: string): Record<string, string> {
  const [header, ...rows] = table.trimEnd().split('\n');
  const col = header.indexOf('RUNTIME');
  expect(col).toBeGreaterThan(0);
  return Object.fromEntries(rows.map((r) => [r.split(/\s+/)[0], r.slice(col).split(/\s+/)[0]]));
}

describe('mlw finetune --runtime', () => {
  it('stores the chosen runtime in the run config; mlw runs and runs show name it', async () => {
    const home = path.join(tmp, 'home-finetune');
    for (const runtime of ['tfjs', 'onnx']) {
      const r = await tinyFinetune(home, runtime);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'completed', step: 1 });
    }
    expect(storedRuntimes(home)).toEqual(['tfjs', 'onnx']);

    const list = await mlwHere(['--home', home, 'runs']);
    expect(list.code).toBe(0);
    expect(runtimeColumn(list.stdout)).toEqual({ '1': 'tfjs', '2': 'onnx' });
    const listed = JSON.parse((await mlwHere(['--home', home, 'runs', '--json'])).stdout) as { id: number; runtime: string }[];
    expect(listed.map((r) => [r.id, r.runtime])).toEqual([
      [2, 'onnx'],
      [1, 'tfjs'],
    ]);
    const show = await mlwHere(['--home', home, 'runs', 'show', '2']);
    expect(show.stdout).toMatch(/^runtime +onnx$/m);
  });

  it('shows runs from before the choice as trained on TensorFlow.js, and no runtime for other kinds', async () => {
    const home = path.join(tmp, 'home-old');
    const store = openStore({ home });
    try {
      store.runs.create({ kind: 'finetune', config: { method: 'lora' } });
      store.runs.create({ kind: 'pretrain', config: { runtime: 'auto' } });
      store.runs.create({ kind: 'quantize', config: { method: 'w8' } });
    } finally {
      store.close();
    }
    const list = await mlwHere(['--home', home, 'runs']);
    expect(runtimeColumn(list.stdout)).toEqual({ '1': 'tfjs', '2': 'tfjs', '3': '-' });
    expect((await mlwHere(['--home', home, 'runs', 'show', '3'])).stdout).toMatch(/^runtime +-$/m);
  });

  it('states the default in its help', async () => {
    for (const command of ['finetune', 'pretrain']) {
      const help = await mlwHere([command, '--help']);
      expect(help.stdout.replace(/\s+/g, ' ')).toMatch(
        /--runtime <name> what computes the training steps; auto: .* \(default auto\) \(choices: "auto", "onnx", "tfjs"\)/,
      );
    }
  });

  it.each([[['finetune', model, '--data', data, '--runtime', 'cuda']], [['pretrain', '--out', path.join(tmp, 'never'), '--runtime', 'webgpu']]])(
    'refuses a runtime that is not one of the choices in one line: %j',
    async (args) => {
      const r = await mlwHere(['--home', path.join(tmp, 'home-refused'), ...args]);
      expect(r.code).toBe(2);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('(run mlw --help'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: option '--runtime <name>' argument '\w+' is invalid\. Allowed choices are auto, onnx, tfjs\.$/);
      expect(fs.existsSync(path.join(tmp, 'home-refused', 'workbench.db'))).toBe(false);
    },
  );

  it('refuses a runtime with --resume: a resumed run keeps its own', async () => {
    for (const command of ['finetune', 'pretrain']) {
      const r = await mlwHere([command, '--resume', '1', '--runtime', 'tfjs']);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`mlw: ${command}: --resume continues a run with its own settings; drop --runtime\n`);
    }
  });
});

describe('mlw pretrain --runtime', () => {
  it('stores the chosen runtime in the run config', async () => {
    const home = path.join(tmp, 'home-pretrain');
    const corpus = path.join(tmp, 'corpus.txt');
    const words = ['the', 'sea', 'ship', 'whale', 'captain', 'wind', 'wave', 'deck', 'rope', 'storm'];
    fs.writeFileSync(
      corpus,
      Array.from({ length: 120 }, (_, i) => Array.from({ length: 20 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ')).join('\n'),
    );
    const tiny = ['--vocab-size', '300', '--hidden', '32', '--intermediate', '64', '--blocks', '2', '--heads', '2', '--kv-heads', '1', '--seq-len', '32'];
    const steps = ['--max-steps', '1', '--batch-size', '2', '--warmup', '0', '--eval-every', '0', '--save-every', '0'];
    const r = await mlwHere([
      '--home',
      home,
      'pretrain',
      '--corpus',
      corpus,
      '--out',
      path.join(tmp, 'pretrained'),
      ...tiny,
      ...steps,
      '--runtime',
      'tfjs',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'completed', step: 1 });
    expect(storedRuntimes(home)).toEqual(['tfjs']);
  });
});
