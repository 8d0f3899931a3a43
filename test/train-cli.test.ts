// `mlw finetune` and `mlw merge` as a user runs them: a run recorded in the
// store, Ctrl-C pausing with a checkpoint and --resume finishing it, the merge
// of the adapter, and one-line errors for bad data and bad flags.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { mlwHere, spawnMlw, waitForStep } from './helpers/train-spawn';

process.env.MLW_THREADS ??= '1';
const tmp = tempDir('train-cli');
const home = path.join(tmp, 'home');
const model = tinyModelDir(tmp);
const data = writeJsonl(path.join(tmp, 'train.jsonl'), arithmeticChats(24));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('mlw finetune', () => {
  it('trains, records the run, its dataset and the resulting adapter, and merges it', async () => {
    const r = await mlwHere([
      '--home',
      home,
      'finetune',
      model,
      '--data',
      data,
      '--max-steps',
      '4',
      '--batch-size',
      '4',
      '--save-every',
      '2',
      '--eval-every',
      '2',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ runId: 1, status: 'completed', step: 4 });
    const store = openStore({ home, readonly: true });
    try {
      const run = store.runs.get(1);
      expect(run.status).toBe('completed');
      expect(store.metrics.curve(1, 'loss').steps).toEqual([1, 2, 3, 4]);
      expect(store.metrics.curve(1, 'val_loss').steps).toEqual([2, 4]);
      const dataset = store.datasets.get(run.datasetId!);
      expect(dataset).toMatchObject({ format: 'chat', rowCount: 24, validationSplit: { fraction: 0.1, seed: 0 } });
      expect(dataset.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(store.checkpoints.list(1).map((c) => [c.step, c.kind])).toEqual([
        [2, 'lora'],
        [4, 'lora'],
      ]);
      const result = store.models.get(out.modelId);
      expect(result).toMatchObject({ source: 'derived', format: 'peft-lora', runId: 1, parentModelId: run.modelId });
      expect(fs.readdirSync(result.path).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    } finally {
      store.close();
    }
    const merged = path.join(tmp, 'merged');
    const m = await mlwHere(['merge', out.checkpoint, '--out', merged]);
    expect(m.code).toBe(0);
    expect(fs.readdirSync(merged).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    const info = await mlwHere(['info', merged, '--json']);
    expect(JSON.parse(info.stdout).params.total).toBe(JSON.parse((await mlwHere(['info', model, '--json'])).stdout).params.total);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('pauses with a checkpoint on %s (Ctrl-C, kill), and --resume finishes the run', async (signal) => {
    const home = path.join(tmp, `home-${signal}`);
    const { child, done } = spawnMlw([
      '--home',
      home,
      'finetune',
      model,
      '--data',
      data,
      '--method',
      'full',
      '--max-steps',
      '60',
      '--batch-size',
      '2',
      '--save-every',
      '0',
      '--json',
    ]);
    await waitForStep(home, 1, 2, done);
    child.kill(signal);
    const paused = await done;
    expect(paused.code).toBe(0);
    const p = JSON.parse(paused.stdout);
    expect(p).toMatchObject({ runId: 1, status: 'paused' });
    expect(fs.existsSync(path.join(p.checkpoint, 'model.safetensors'))).toBe(true);
    expect(path.basename(p.checkpoint)).toBe(`step-${p.step}`);
    const r = await mlwHere(['--home', home, 'finetune', '--resume', '1', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ runId: 1, status: 'completed', step: 60 });
  });

  it('reports bad rows with file and line, and refuses to train on them', async () => {
    const bad = writeJsonl(path.join(tmp, 'bad.jsonl'), [...arithmeticChats(2), '{"messages": [{"role": "user", "content": "hi"}]}', '{oops']);
    const check = await mlwHere(['finetune', model, '--data', bad, '--check']);
    expect(check.code).toBe(1);
    const lines = check.stderr.trim().split('\n');
    expect(lines[0]).toBe(`${bad}:3: conversation does not end with an assistant message`);
    expect(lines[1].startsWith(`${bad}:4: not valid JSON (`)).toBe(true);
    expect(lines[2]).toBe('mlw: error: 2 problems in the data');
    const train = await mlwHere(['--home', home, 'finetune', model, '--data', bad]);
    expect(train.code).toBe(1);
    expect(train.stderr).toBe(`mlw: error: ${bad}:3: conversation does not end with an assistant message (and 1 more problem)\n`);
  });

  it('shows control characters of the data escaped, never raw on the terminal', async () => {
    const bad = path.join(tmp, 'controls.jsonl');
    fs.writeFileSync(bad, '{"\\u001b]0;owned\\u0007\\u001b[2J":1}\n');
    for (const args of [
      ['finetune', model, '--data', bad, '--check'],
      ['--home', home, 'finetune', model, '--data', bad],
    ]) {
      const r = await mlwHere(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('(keys: "\\x1b]0;owned\\x07\\x1b[2J")');
      expect(r.stderr.replaceAll('\n', '')).not.toMatch(/\p{Cc}/u);
    }
  });

  it('prints the data summary and the memory and time estimate with --check', async () => {
    // A row is <s>, "### User:\n3+4\n\n### Assistant:\n7" (32 tokens with the word-start ▁) and </s>: 34, or 35 for a two-digit sum.
    const r = await mlwHere(['finetune', model, '--data', data, '--max-seq-len', '34', '--check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^data {9}22 rows, \d+ tokens \(\d+ learned\), longest 35 tokens \(line \d+\)$/m);
    expect(r.stdout).toMatch(/^cut {10}[1-9]\d* rows longer than 34 tokens; 0 left with nothing to learn$/m);
    expect(r.stdout).toMatch(/^memory {7}~\d+\.\d\d GB of \d+\.\d\d GB .*backprop$/m);
  });

  it.each([
    [['finetune'], 'finetune: give <model> and --data (or --resume <runId>)'],
    [['finetune', 'm', '--data', 'd', '--epochs', '2', '--max-steps', '3'], 'finetune: give --epochs or --max-steps, not both'],
    [['finetune', 'm', '--data', 'd', '--lora-targets', 'q,lm_head'], '--lora-targets: "lm_head" is not one of q, k, v, o, gate, up, down'],
    [['finetune', 'm', '--data', 'd', '--lr', 'fast'], '--lr: "fast" is not a number'],
    [['finetune', '--resume', '2', '--max-steps', '9'], 'finetune: --resume continues a run with its own settings; drop --max-steps'],
  ])('usage error %j', async (args, message) => {
    const r = await mlwHere(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`mlw: ${message}\n`);
  });
});
