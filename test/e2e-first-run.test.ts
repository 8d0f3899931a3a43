// The first-run experience: a fresh MLW_HOME, the bundled default model is
// already there, a chat answer streams from it, and the sample fine-tune
// starts from the wizard — all without importing or downloading anything.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { bundledResources } from '../engine/server/resources';
import { chromiumAvailable, openApp, screenshotPath, type App } from './helpers/web';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

const defaultModel = bundledResources().defaultModel;

describe('the bundled default model', () => {
  it('is shipped in resources/ with its tokenizer and model card, under 30 MB (13.85M parameters in float16)', () => {
    expect(defaultModel, 'resources/index.json must name a default model that exists').not.toBeNull();
    const files = fs.readdirSync(defaultModel!.path);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'MODEL_CARD.md']) expect(files).toContain(f);
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(defaultModel!.path, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(30 * 1024 * 1024);
    // The card says how it was made: the pre-training command (here a job exported for a GPU machine) and its data.
    expect(fs.readFileSync(path.join(defaultModel!.path, 'MODEL_CARD.md'), 'utf8')).toMatch(/mlw (job export-)?pretrain --corpus /);
  });
});

describe.skipIf(!defaultModel || !chromiumAvailable())('first run in web mode', () => {
  let app: App;
  let page: Page;

  beforeAll(async () => {
    app = await openApp({ width: 1280, height: 820 }); // a fresh, empty home
    page = app.page;
  });
  afterAll(() => app?.close());

  it('shows the default model on the Models page', async () => {
    await page.goto(app.engine.url);
    await page.click('a[data-page=models]');
    await page.waitForSelector('[data-testid=model-row]');
    // The default model and its chat variant (an adapter of it).
    const rows = await page.locator('[data-testid=model-row]').allTextContents();
    expect(rows).toHaveLength(2);
    for (const name of [defaultModel!.name, bundledResources().chatModel!.name])
      expect(
        rows.some((r) => r.includes(name)),
        name,
      ).toBe(true);
    await page.screenshot({ path: screenshotPath('first-run-models') });
  });

  it('streams an English answer from it in the chat', { timeout: SAFETY_NET }, async () => {
    await page.click('a[data-page=chat]');
    await page.click('[data-testid=new-chat]');
    // A fixed seed: the answer is sampled, and a test must not depend on luck.
    await page.click('[data-testid=settings-toggle]');
    await page.fill('[data-testid=seed]', '1');
    await page.locator('[data-testid=seed]').blur();
    await page.click('[data-testid=settings-toggle]');
    await page.fill('[data-testid=composer]', 'Tell me about the sea.');
    await page.click('[data-testid=send]');
    await page.waitForSelector('[data-testid=live-rate]');
    await page.waitForSelector('[data-testid=regenerate]', { timeout: SAFETY_NET });
    const answer = (await page.locator('[data-testid=message-assistant] [data-testid=message-content]').last().textContent()) ?? '';
    // Recognisable English: mostly common English words.
    const words = answer.toLowerCase().match(/[a-z]+/g) ?? [];
    expect(words.length).toBeGreaterThan(5);
    const common = new Set([
      'the',
      'of',
      'and',
      'a',
      'to',
      'in',
      'is',
      'that',
      'it',
      'was',
      'he',
      'for',
      'with',
      'as',
      'his',
      'on',
      'be',
      'at',
      'by',
      'i',
      'this',
      'had',
      'not',
      'are',
      'but',
      'from',
      'or',
      'have',
      'an',
      'they',
      'which',
      'you',
      'were',
      'all',
      'we',
      'there',
      'their',
      'one',
      'so',
      'sea',
      'whale',
      'ship',
      'our',
      'will',
      'been',
      'upon',
      'its',
      'would',
      'him',
      'my',
      'me',
      'no',
    ]);
    expect(words.filter((w) => common.has(w)).length / words.length).toBeGreaterThan(0.2);
    await page.screenshot({ path: screenshotPath('first-run-chat') });
  });

  it('starts the sample fine-tune from the wizard', { timeout: SAFETY_NET }, async () => {
    await page.click('a[data-page=finetune]');
    await page.click('[data-testid=ft-next]');
    await page.click('[data-testid=ft-sample]');
    await page.waitForSelector('[data-testid=ft-summary]');
    await page.click('[data-testid=ft-next]');
    await page.fill('[data-testid=ft-max-steps]', '2');
    await expect.poll(() => page.textContent('[data-testid=ft-estimate]'), { timeout: SAFETY_NET }).toMatch(/steps/);
    await page.click('[data-testid=ft-start]');
    await expect.poll(() => page.textContent('[data-testid=ft-step-train]'), { timeout: SAFETY_NET, interval: 1000 }).toMatch(/step [12]\/2/);
    await page.screenshot({ path: screenshotPath('first-run-finetune') });
  });
});
