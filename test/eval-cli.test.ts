// `mlw eval` and `mlw eval-convert`: exit codes (0 ok, 2 usage, 1 failure in
// one line), JSON on stdout, and the report in the store. One run goes
// through `node bin/mlw.js` as a user runs it; the rest call the CLI's main()
// in this process (the same code, without a process start each).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../engine/cli/main';
import { openStore } from '../engine/store/open';
import { bundledResources, RESOURCES } from '../engine/server/resources';
import { FIXTURES, goldenDir } from './helpers/golden';
import { tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { mlwProcess as runMlw, type MlwResult as Result } from './helpers/mlw-process';

let root: string;
let home: string;
let model: string;

/** `mlw …` in this process. */
async function mlw(...args: string[]): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((c) => (out.push(String(c)), true));
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ') + '\n'));
  vi.spyOn(process.stderr, 'write').mockImplementation((c) => (err.push(String(c)), true));
  try {
    const code = await main(['--home', home, ...args]);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    vi.restoreAllMocks();
  }
}

/** `mlw …` as its own process. */
function mlwProcess(...args: string[]): Promise<Result> {
  return runMlw(['--home', home, ...args]);
}

function json(r: Result): Record<string, unknown> {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

const TEXT = path.join(FIXTURES, 'eval', 'text.txt');

afterEach(() => {
  vi.restoreAllMocks();
});

beforeAll(() => {
  root = tempDir('eval-cli');
  home = path.join(root, 'home');
  model = tinyModelDir(root);
});

describe('mlw eval', () => {
  it('scores in windows of the length the model was trained on where the workbench knows it (the bundled model: 256 of its 2048 positions)', async () => {
    const bundled = bundledResources().defaultModel;
    if (!bundled) return;
    const text = path.join(root, 'long.txt');
    fs.writeFileSync(text, fs.readFileSync(path.join(RESOURCES, 'eval', 'held-out.txt'), 'utf8').slice(0, 3000));
    const own = home;
    home = path.join(root, 'home-bundled'); // a home of its own: the other tests count this home's models
    let r: Record<string, unknown>;
    try {
      r = json(await mlw('eval', bundled.path, '--text', text, '--json'));
    } finally {
      home = own;
    }
    expect(bundled.trainedContext).toBe(256);
    expect(r).toMatchObject({ type: 'perplexity', window: 256, stride: 255 });
  });

  it('perplexity and multiple choice with --json, recorded as reports of one model', async () => {
    const tasks = writeJsonl(path.join(root, 'tasks.jsonl'), [
      { task: 'copy', context_ids: [1, 5, 6], choices_ids: [[7], [8, 9]], gold: 0 },
      { task: 'words', context: 'The keeper climbed the', choices: ['stairs', 'sea'], gold: 0 },
    ]);
    const ppl = json(await mlwProcess('eval', model, '--text', TEXT, '--window', '64', '--stride', '32', '--json'));
    expect(ppl).toMatchObject({ type: 'perplexity', window: 64, stride: 32, model: { path: model, format: 'safetensors' } });
    expect(ppl.ppl as number).toBeGreaterThan(1);
    // the model is in the store now: by id, with the harness's BOS choice and a limit
    const mc = json(await mlw('eval', String(ppl.modelId), '--tasks', tasks, '--limit', '1', '--bos', '--runtime', 'tfjs', '--json'));
    expect(mc).toMatchObject({ type: 'multiple_choice', modelId: ppl.modelId, bos: true, limit: 1, runtime: { name: 'tfjs' }, tasksFile: { items: 2 } });
    expect((mc.tasks as { task: string }[]).map((t) => t.task)).toEqual(['copy', 'words']);

    const store = openStore({ home, readonly: true });
    try {
      const reports = store.reports.list({ kind: 'evaluation', modelId: ppl.modelId as number });
      expect(reports.map((r) => r.id).sort()).toEqual([ppl.reportId, mc.reportId].sort());
      expect(store.models.list()).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  it('prints the report as text, and says where it was recorded', async () => {
    const r = await mlw('eval', model, '--text', TEXT, '--window', '128');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^model {4}.+\ntext {5}.+text\.txt \(795 bytes, sha256 [0-9a-f]{12}…\)\ntokens {3}\d+ in \d+ windows of 128 \(stride 127\)\nnll .+\nppl {6}\d+\.\d{3}\ntime .+\n$/,
    );
    expect(r.stderr).toMatch(new RegExp(`recorded as report \\d+ of model \\d+ in ${home}\\n$`));
  });

  it('exit 2 for usage mistakes, exit 1 with one line for bad input', async () => {
    const badRow = writeJsonl(path.join(root, 'bad.jsonl'), [
      { task: 'a', context_ids: [1], choices_ids: [[2], [3]], gold: 0 },
      { task: 'a', context: 'c', choices: ['x'], gold: 0 },
    ]);
    const none = await mlw('eval', model);
    const both = await mlw('eval', model, '--text', TEXT, '--tasks', TEXT);
    const missing = await mlw('eval', model, '--text', path.join(root, 'nope.txt'));
    const unknown = await mlw('eval', 'no-such-model', '--text', TEXT);
    const stride = await mlw('eval', model, '--tasks', badRow, '--stride', '4');
    const row = await mlw('eval', goldenDir('tiny-gqa'), '--tasks', badRow);
    const window = await mlw('eval', model, '--text', TEXT, '--window', '1000');
    expect([none, both, missing, unknown, stride].map((r) => r.code)).toEqual([2, 2, 2, 2, 2]);
    expect(none.stderr).toBe('mlw: eval: give exactly one of --text or --tasks\n');
    expect(missing.stderr).toBe(`mlw: --text: ${path.join(root, 'nope.txt')} not found\n`);
    expect(unknown.stderr).toMatch(/^mlw: eval: "no-such-model" is not a model folder, nor the id or name of a model in /);
    expect(stride.stderr).toBe('mlw: --window and --stride apply to --text only\n');
    expect(row.code).toBe(1);
    expect(row.stderr).toBe(`mlw: error: ${badRow}:2: "choices": Too small: expected array to have >=2 items\n`);
    expect(window.code).toBe(1);
    expect(window.stderr).toBe("mlw: error: window 1000 exceeds the model's 256-token context\n");
  });
});

describe('mlw eval-convert', () => {
  it('writes a tasks file mlw eval reads; exit 2 for an unknown format, 1 for rows of another format', async () => {
    const out = path.join(root, 'arc.tasks.jsonl');
    const ok = await mlw('eval-convert', '--format', 'arc', '--task', 'arc_easy', path.join(FIXTURES, 'eval', 'arc.jsonl'), out, '--json');
    const format = await mlw('eval-convert', '--format', 'mmlu', path.join(FIXTURES, 'eval', 'arc.jsonl'), out);
    const wrong = await mlw('eval-convert', '--format', 'boolq', path.join(FIXTURES, 'eval', 'arc.jsonl'), path.join(root, 'x.jsonl'));
    expect(json(ok)).toEqual({ format: 'arc', task: 'arc_easy', items: 2, out });
    expect(
      fs
        .readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).task),
    ).toEqual(['arc_easy', 'arc_easy']);
    expect(format.code).toBe(2);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe(
      `mlw: error: ${path.join(FIXTURES, 'eval', 'arc.jsonl')}:1: not a boolq row: "passage": Invalid input: expected string, received undefined\n`,
    );
    const evaluated = json(await mlw('eval', model, '--tasks', out, '--json'));
    expect(evaluated.overall).toMatchObject({ items: 2 });
  });
});
