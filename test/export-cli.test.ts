// mlw export on the command line: flags of another format are refused, a
// target folder that is not an earlier export is refused in one line and left
// as it was, and an export leaves its record (source, options, files) and can
// be written again over itself; import-gguf is the way back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundledResources } from '../engine/server/resources';
import { EXPORT_RECORD } from '../engine/export/target';
import { mlwHere } from './helpers/train-spawn';

const model = bundledResources().defaultModel!.path;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-export-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('mlw export', () => {
  it('refuses an option of another format', async () => {
    const r = await mlwHere(['export', model, '--format', 'gguf', '--dtype', 'float16', '--out', path.join(tmp, 'x')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/--dtype applies to --format hf only/);
    expect(fs.existsSync(path.join(tmp, 'x'))).toBe(false);
  });

  it('refuses a folder that holds something else, and leaves it alone', async () => {
    const busy = path.join(tmp, 'busy');
    fs.mkdirSync(busy);
    fs.writeFileSync(path.join(busy, 'notes.txt'), 'mine');
    const r = await mlwHere(['export', model, '--format', 'hf', '--out', busy]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/busy: not empty and not an earlier export/);
    expect(fs.readdirSync(busy)).toEqual(['notes.txt']);
  });

  it('writes an export with its record, and replaces it when run again', async () => {
    const out = path.join(tmp, 'hf');
    for (const dtype of ['float32', 'float16']) {
      const r = await mlwHere(['export', model, '--format', 'hf', '--dtype', dtype, '--out', out, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const outcome = JSON.parse(r.stdout);
      expect(outcome.outDir).toBe(out);
      expect(outcome.files).toContain('config.json');
      expect(outcome.bytes).toBe(outcome.files.reduce((n: number, f: string) => n + fs.statSync(path.join(out, f)).size, 0));
      const record = JSON.parse(fs.readFileSync(path.join(out, EXPORT_RECORD), 'utf8'));
      expect(record).toMatchObject({ source: path.resolve(model), options: { format: 'hf', dtype } });
      expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe(dtype);
    }
  });

  it('import-gguf brings an exported GGUF back as a model folder that scores like the source', async () => {
    const out = path.join(tmp, 'gguf');
    expect((await mlwHere(['export', model, '--format', 'gguf', '--type', 'f32', '--out', out])).code).toBe(0);
    const back = path.join(tmp, 'back');
    const r = await mlwHere(['import-gguf', path.join(out, 'model-f32.gguf'), '--out', back, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const score = async (dir: string) => JSON.parse((await mlwHere(['score', dir, '--text', 'The sea was calm.', '--json'])).stdout);
    const [want, got] = [await score(model), await score(back)];
    expect(got.ids).toEqual(want.ids);
    got.logprobs.forEach((lp: number, i: number) => expect(Math.abs(lp - want.logprobs[i])).toBeLessThan(1e-3));
    const again = await mlwHere(['import-gguf', path.join(out, 'model-f32.gguf'), '--out', back]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/back: not empty/);
  });
});
