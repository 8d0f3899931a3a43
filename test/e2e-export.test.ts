// End to end, the model page's Export in web mode: the bundled model exported
// as a Hugging Face folder (plain LLaMA) and as GGUF q8_0, with progress, the
// folder and the line to load it on the other side; a second export into the
// same kind of place is its own folder, and a target that is not an export is
// refused in one line; the GGUF file imports back as a model.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { bundledResources } from '../engine/server/resources';
import { chromiumAvailable, openApp, screenshotPath, type App } from './helpers/web';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

const defaultModel = bundledResources().defaultModel;

describe.skipIf(!defaultModel || !chromiumAvailable())('Export from the model page', () => {
  let app: App;
  let page: Page;
  let ggufFile = '';

  beforeAll(async () => {
    app = await openApp({ width: 1280, height: 900 });
    page = app.page;
    await page.click('a[data-page=models]');
    await page.click('[data-testid=model-row]');
    await page.waitForSelector('[data-testid=model-details]');
    await page.click('[data-testid=model-export]');
    await page.waitForSelector('[data-testid=export-panel]');
  });
  afterAll(() => app?.close());

  async function exportedDir(): Promise<string> {
    await page.click('[data-testid=export-start]');
    await page.waitForSelector('[data-testid=export-done], [data-testid=export-error]', { timeout: SAFETY_NET });
    expect(await page.locator('[data-testid=export-error]').count(), (await page.textContent('[data-testid=export-error]').catch(() => '')) ?? '').toBe(0);
    const done = (await page.textContent('[data-testid=export-done]'))!;
    return /Written: (\S+)/.exec(done)![1];
  }

  it('writes a Hugging Face folder that transformers loads as LLaMA, and says how', { timeout: SAFETY_NET }, async () => {
    await page.check('[data-testid=export-format-hf]');
    const dir = await exportedDir();
    expect(dir.startsWith(path.join(app.engine.home, 'exports'))).toBe(true);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config.model_type).toBe('llama');
    expect(config.architectures).toEqual(['LlamaForCausalLM']);
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
    expect(await page.textContent('[data-testid=export-load-line]')).toBe(`AutoModelForCausalLM.from_pretrained("${dir}")`);
    await page.screenshot({ path: screenshotPath('export-hf') });
  });

  it('writes GGUF q8_0 for llama.cpp', { timeout: SAFETY_NET }, async () => {
    await page.check('[data-testid=export-format-gguf]');
    await page.selectOption('[data-testid=export-gguf-type]', 'q8_0');
    const dir = await exportedDir();
    const gguf = fs.readdirSync(dir).find((f) => f.endsWith('.gguf'));
    expect(gguf).toBeDefined();
    expect(fs.readFileSync(path.join(dir, gguf!)).subarray(0, 4).toString('latin1')).toBe('GGUF');
    expect(await page.textContent('[data-testid=export-load-line]')).toBe(`llama-cli -m "${path.join(dir, gguf!)}"`);
    ggufFile = path.join(dir, gguf!);
  });

  it('imports a GGUF file as a model, converted into the home', { timeout: SAFETY_NET }, async () => {
    await page.fill('[data-testid=import-path]', ggufFile);
    await page.click('[data-testid=import-button]');
    await page.waitForFunction(() => document.querySelector('[data-testid=model-details] h2')?.textContent === 'model-q8_0.gguf', null, {
      timeout: SAFETY_NET,
    });
    const details = (await page.textContent('[data-testid=model-details]'))!;
    expect(details).toContain(path.join(app.engine.home, 'models', 'model-q8_0-gguf'));
    expect(fs.existsSync(path.join(app.engine.home, 'models', 'model-q8_0-gguf', 'model.safetensors'))).toBe(true);
  });
});
