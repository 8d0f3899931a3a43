// The bundled default model (resources/default-model, made by `mlw pretrain`):
// it is a Hugging Face checkpoint — transformers' LlamaForCausalLM and the
// tokenizers library give the same tokens, log-probabilities and greedy text
// as our engine on both runtimes (fixtures/default-model/transformers.json,
// made by make_transformers_reference.py on the device machine) — it models
// held-out English far better than chance, and fine-tuning it on the sample
// dataset visibly changes its answers.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { generate } from '../engine/generate/generate';
import { openRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { RUNTIME_NAMES } from '../engine/runtime/runtime';
import { bundledResources } from '../engine/server/resources';
import { loadTokenizer } from '../engine/tokenizer/tokenizer';
import { mlwHere } from './helpers/train-spawn';

const resources = bundledResources();
const dir = resources.defaultModel?.path;
const reference = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'fixtures/default-model/transformers.json'), 'utf8')) as {
  cases: { text: string; ids: number[]; logprobs: number[]; greedy24: number[] }[];
};

describe.skipIf(!dir)('the bundled default model', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('tokenizes as the tokenizers library does', () => {
    const tok = loadTokenizer(dir!);
    for (const c of reference.cases) expect(tok.encode(c.text, { bos: true }), c.text).toEqual(c.ids);
  });

  describe.each(RUNTIME_NAMES)('on %s', (runtimeName) => {
    it("gives transformers' log-probabilities (1e-4) and greedy tokens", async () => {
      const { runtime } = await openRuntime(readModelFolder(dir!), { runtime: runtimeName });
      try {
        for (const c of reference.cases) {
          const { logprobs } = await runtime.score(c.ids);
          expect(logprobs).toHaveLength(c.logprobs.length);
          const worst = Math.max(...logprobs.map((v, i) => Math.abs(v - c.logprobs[i])));
          expect(worst, c.text).toBeLessThan(1e-4);
          const out = await generate(runtime, c.ids, { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stopAtEos: false, maxNewTokens: 24 });
          expect(out.ids, c.text).toEqual(c.greedy24);
        }
      } finally {
        await runtime.dispose();
      }
    });
  });

  it('models the held-out text far better than chance', async () => {
    const evalText = resources.evalTexts[0].path;
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-default-eval-'));
    const r = await mlwHere(['--home', home, 'eval', dir!, '--text', evalText, '--json']);
    fs.rmSync(home, { recursive: true, force: true });
    expect(r.code, r.stderr).toBe(0);
    const ppl = JSON.parse(r.stdout).ppl as number;
    // Chance is the vocabulary size, 8000; the model card's validation perplexity is 179.
    expect(ppl).toBeLessThan(400);
  });

  describe('fine-tuned on the sample dataset', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-default-ft-'));
    afterAll(() => fs.rmSync(home, { recursive: true, force: true }));
    const answer = async (model: string, question: string): Promise<string> => {
      const r = await mlwHere(['generate', model, '--chat', '--prompt', question, '--temperature', '0', '--max-new-tokens', '8', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).text as string;
    };

    it('answers like the old sailor of the dataset ("Aye, …"), which it did not before', async () => {
      const data = resources.datasets[0].path;
      const ft = await mlwHere(['--home', home, 'finetune', dir!, '--data', data, '--method', 'full', '--max-steps', '16', '--lr', '2e-3', '--json']);
      expect(ft.code, ft.stderr).toBe(0);
      const tuned = path.join(home, 'models', fs.readdirSync(path.join(home, 'models'))[0]);
      for (const question of ['What is a whale?', 'Tell me about your family.']) {
        expect(await answer(dir!, question)).not.toMatch(/^Aye/);
        expect(await answer(tuned, question)).toMatch(/^Aye, /);
      }
    }, 600_000); // sized to the assertion (8 steps already give 'Aye, '; 16 for margin): ~15 s alone; the limit is only a safety net for a loaded machine
  });
});
