// A new user's first start in web mode: the app lands on the Models page's
// welcome (the bundled demo model said plainly to be a small model trained
// here, the sample dataset, Meta's MobileLLM family with the gated-access
// steps), and the model lists follow the engine without a reload: a share in
// the Inspector, a merge and a quantization add their models to every list,
// an import of a folder already imported says so, and actions a model cannot
// take say why.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { bundledResources } from '../engine/server/resources';
import { chromiumAvailable, openApp, screenshotPath, type App } from './helpers/web';
import { tinyModelDir } from './helpers/train-fixtures';
import { initBackend } from '../engine/backend/select';
import { loadModel } from '../engine/io/checkpoint';
import { LoraSettings } from '../engine/train/config';
import { applyLora, writeAdapterFiles } from '../engine/train/lora';

const defaultModel = bundledResources().defaultModel;

describe.skipIf(!defaultModel || !chromiumAvailable())('first start and model lists in web mode', () => {
  let app: App;
  let page: Page;
  let tmp: string;
  let modelDir: string;
  /** Tells a reload apart from client-side navigation: a full page load clears it. */
  const markPage = () => page.evaluate(() => ((window as unknown as { mlwMark: number }).mlwMark = 1));
  const pageMarked = () => page.evaluate(() => (window as unknown as { mlwMark?: number }).mlwMark === 1);
  const modelRows = () => page.locator('[data-testid=model-row]').allTextContents();

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-first-start-'));
    modelDir = tinyModelDir(tmp); // 4 blocks: it can be shared
    app = await openApp({ width: 1400, height: 1000 }); // a fresh, empty home
    page = app.page;
  });
  afterAll(async () => {
    await app?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('lands on the welcome view: the demo model, the sample dataset, and the MobileLLM family to download', async () => {
    await page.waitForSelector('[data-testid=welcome]');
    expect(new URL(page.url()).hash).toBe('#/models');
    expect(await page.textContent('[data-testid=welcome-bundled]')).toMatch(
      /small demo model .* this project\s+pre-trained.*It\s+is\s+not\s+Meta's\s+MobileLLM.*chat\s+variant/s,
    );
    expect(await page.textContent('[data-testid=welcome-dataset]')).toContain(bundledResources().datasets[0].name);
    const family = await page.locator('[data-testid=welcome-family-row]').allTextContents();
    for (const size of ['125M', '350M', '600M', '1B', '1.5B']) expect(family.some((r) => r.includes(`facebook/MobileLLM-${size}`))).toBe(true);
    expect(family.some((r) => r.includes('layer-share'))).toBe(true);
    expect(await page.textContent('[data-testid=welcome-gated]')).toMatch(/gated.*license/s);
    // Download… opens the form with that repo, ready for the token.
    await page.locator('[data-testid=welcome-family-row]', { hasText: 'facebook/MobileLLM-350M' }).first().locator('[data-testid=welcome-download]').click();
    await page.waitForSelector('[data-testid=pull-form]');
    expect(await page.inputValue('[data-testid=pull-repo]')).toBe('facebook/MobileLLM-350M');
    await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('pull-token');
    await page.screenshot({ path: screenshotPath('first-start-welcome'), fullPage: true });
  });

  it('imports a folder once; the same folder again is "already imported" and selected; the welcome gives way', async () => {
    await markPage();
    await page.fill('[data-testid=import-path]', modelDir);
    await page.click('[data-testid=import-button]');
    await page.waitForSelector('[data-testid=model-details]');
    await expect.poll(modelRows).toHaveLength(3); // the bundled model, its chat variant, the import
    await expect.poll(() => page.locator('[data-testid=welcome]').count()).toBe(0);
    const copy = path.join(tmp, 'copy-of-tiny');
    fs.cpSync(modelDir, copy, { recursive: true });
    await page.fill('[data-testid=import-path]', copy);
    await page.click('[data-testid=import-button]');
    await page.waitForSelector('[data-testid=import-known]');
    expect(await page.textContent('[data-testid=import-known]')).toMatch(/Already imported: .* tiny-gqa-model/);
    expect(await modelRows()).toHaveLength(3);
    expect(await page.textContent('[data-testid=model-row].sel')).toContain('tiny-gqa-model');
    expect(await pageMarked()).toBe(true);
  });

  it('a model without a tokenizer: the actions it lacks say why; it is quantized with sizes and per-layer errors, and no perplexity', async () => {
    const bare = path.join(tmp, 'no-tokenizer');
    fs.cpSync(modelDir, bare, { recursive: true });
    fs.rmSync(path.join(bare, 'tokenizer.json'));
    await page.fill('[data-testid=import-path]', bare);
    await page.click('[data-testid=import-button]');
    await expect.poll(() => page.textContent('[data-testid=model-details] h2')).toBe('no-tokenizer');
    for (const action of ['model-chat', 'model-finetune', 'evaluate']) {
      expect(await page.isDisabled(`[data-testid=${action}]`), action).toBe(true);
      expect(await page.getAttribute(`[data-testid=${action}]`, 'title')).toMatch(/^no tokenizer in this folder \(tokenizer\.model or tokenizer\.json\): /);
    }
    expect(await page.getAttribute('[data-testid=model-chat]', 'title')).toMatch(/: chat needs one$/);
    expect(await page.textContent('[data-testid=model-why-not]')).toContain('Chat, Fine-tune and Evaluate need one');
    expect(await page.isDisabled('[data-testid=model-quantize]')).toBe(false);
    await page.screenshot({ path: screenshotPath('first-start-why-not'), fullPage: true });

    await page.click('[data-testid=model-quantize]');
    await page.waitForSelector('[data-testid=quant-no-tokenizer]');
    await page.click('label.method:has([data-testid=quant-method-w8])');
    await page.click('[data-testid=quant-start]');
    await page.waitForSelector('[data-testid=quant-no-ppl]', { timeout: 240_000 });
    expect(await page.textContent('[data-testid=quant-no-ppl]')).toMatch(/Perplexity not measured: it needs a tokenizer.*fixed random token ids/s);
    expect(await page.textContent('[data-testid=quant-report]')).toMatch(/before/);
    await page.click('a[data-page=models]');
  }, 300_000);

  it('a LoRA adapter: Quantize says to merge first; Merge into base makes a plain model, listed and selected without a reload', async () => {
    const adapterDir = path.join(tmp, 'adapter');
    await initBackend();
    const { model } = loadModel(modelDir);
    const adapters = applyLora(model, LoraSettings.parse({ rank: 2, alpha: 4, dropout: 0, targets: ['q', 'v'] }), { seed: 1 }, (t) => t);
    fs.mkdirSync(adapterDir);
    writeAdapterFiles(adapters, adapterDir, modelDir);
    adapters.remove();
    model.dispose();
    await page.fill('[data-testid=import-path]', adapterDir);
    await page.click('[data-testid=import-button]');
    await expect.poll(() => page.textContent('[data-testid=model-details] h2')).toBe('adapter');
    expect(await page.isDisabled('[data-testid=model-quantize]')).toBe(true);
    expect(await page.getAttribute('[data-testid=model-quantize]', 'title')).toMatch(/^a LoRA adapter: merge it into its base model first/);
    const before = (await modelRows()).length;
    await page.click('[data-testid=model-merge]');
    await expect.poll(() => page.textContent('[data-testid=model-details] h2'), { timeout: 240_000, interval: 500 }).toBe('adapter-merged');
    expect(await modelRows()).toHaveLength(before + 1);
    expect(await page.textContent('[data-testid=model-details]')).toMatch(/safetensors/);
    expect(await page.isDisabled('[data-testid=model-quantize]')).toBe(false);
    expect(await page.isDisabled('[data-testid=model-chat]')).toBe(false); // the base's tokenizer came along
    expect(await pageMarked()).toBe(true);
  }, 300_000);

  it('a shared copy made in the Inspector appears in the lists without a reload, and offers Unshare, not Share', async () => {
    await page.click('a[data-page=inspector]');
    await page.selectOption('[data-testid=inspect-target]', { label: 'tiny-gqa-model' });
    await page.click('[data-testid=strategy-immediate]');
    await page.waitForSelector('[data-testid=convert-share]:not([disabled])');
    expect(await page.locator('[data-testid=convert-unshare]').count()).toBe(0);
    await page.click('[data-testid=convert-share]');
    // The Inspector's own model list gains the shared copy when the job ends.
    const options = () => page.locator('[data-testid=inspect-target] option').allTextContents();
    await expect.poll(async () => (await options()).some((o) => o.includes('shared')), { timeout: 240_000, interval: 500 }).toBe(true);
    const shared = (await options()).find((o) => o.includes('shared'))!;
    await page.selectOption('[data-testid=inspect-target]', { label: shared });
    await page.waitForSelector('[data-testid=convert-unshare]');
    expect(await page.locator('[data-testid=convert-share]').count()).toBe(0);
    await page.click('a[data-page=models]');
    expect((await modelRows()).some((r) => r.includes(shared))).toBe(true);
    expect(await pageMarked()).toBe(true);
    await page.screenshot({ path: screenshotPath('first-start-shared-listed'), fullPage: true });
  }, 300_000);

  it('a quantized model appears in the Models list without a reload', async () => {
    await page.click('a[data-page=models]');
    const before = (await modelRows()).length;
    await page.click('a[data-page=quantize]');
    await page.selectOption('[data-testid=quant-model]', { label: 'tiny-gqa-model' });
    await page.click('label.method:has([data-testid=quant-method-w8])');
    await page.click('[data-testid=quant-start]');
    await page.waitForSelector('[data-testid=quant-report]', { timeout: 240_000 });
    await page.click('a[data-page=models]');
    await expect.poll(async () => (await modelRows()).length).toBe(before + 1);
    expect((await modelRows()).some((r) => r.includes('tiny-gqa-model-w8'))).toBe(true);
    expect(await pageMarked()).toBe(true);
    await page.screenshot({ path: screenshotPath('first-start-quantized-listed'), fullPage: true });
  }, 300_000);
});
