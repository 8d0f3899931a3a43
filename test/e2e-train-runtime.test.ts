// End to end in web mode with Chromium: the training runtime. The Runs page
// names the runtime that trained each run (from its stored config; a run from
// before the choice, with none, was trained on TensorFlow.js), and the
// wizard's advanced settings offer the choice and send it with the run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openStore } from '../engine/store/open';
import { chromiumAvailable, importModel, launchBrowser, screenshotPath, startEngine, tinyChatModel, type Engine } from './helpers/web';
import type { Browser } from 'playwright-core';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

const modelDir = tinyChatModel(fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-runtime-model-')));

/** A home with two finished fine-tuning runs: one whose config records ONNX Runtime, one from before the choice. */
function homeWithRuns(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-runtime-home-'));
  const store = openStore({ home });
  try {
    for (const config of [{ method: 'lora', runtime: 'onnx' }, { method: 'lora' }]) {
      const run = store.runs.create({ kind: 'finetune', config });
      store.runs.setStatus(run.id, 'running');
      store.runs.setStatus(run.id, 'completed');
    }
  } finally {
    store.close();
  }
  return home;
}

describe.skipIf(!modelDir || !chromiumAvailable())('the training runtime in web mode', () => {
  let engine: Engine;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    engine = await startEngine({ home: homeWithRuns() });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(engine.url);
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    if (engine) fs.rmSync(engine.home, { recursive: true, force: true });
  });

  it('names the runtime of each run on the Runs page and in the run detail', async () => {
    await page.click('a[data-page=runs]');
    await expect.poll(() => page.locator('[data-testid=run-row]').count()).toBe(2);
    const byId = async () =>
      Object.fromEntries(
        await page
          .locator('[data-testid=run-row]')
          .evaluateAll((rows) => rows.map((r) => [r.querySelector('button.link')!.textContent, r.querySelector('[data-testid=run-runtime]')!.textContent])),
      );
    expect(await byId()).toEqual({ '1': 'ONNX Runtime', '2': 'TensorFlow.js' });
    await page.locator('[data-testid=run-row] button.link', { hasText: /^1$/ }).click();
    expect(await page.textContent('[data-testid=run-detail-runtime]')).toBe('ONNX Runtime');
    await page.locator('[data-testid=run-row] button.link', { hasText: /^2$/ }).click();
    await expect.poll(() => page.textContent('[data-testid=run-detail] h2')).toMatch(/^Run 2 · finetune · completed\s· trained on TensorFlow\.js$/);
  });

  it('offers the runtime in the wizard’s advanced settings and sends the choice with the run', { timeout: SAFETY_NET }, async () => {
    await importModel(page, modelDir!);
    await page.click('a[data-page=finetune]');
    await page.click('[data-testid=ft-next]');
    await page.click('[data-testid=ft-sample]');
    await page.waitForSelector('[data-testid=ft-summary]');
    await page.click('[data-testid=ft-next]');
    await page.click('[data-testid=ft-preset-quick]');
    await page.fill('[data-testid=ft-max-steps]', '1');
    await page.click('[data-testid=ft-advanced] summary');
    const select = page.locator('[data-testid=ft-runtime]');
    expect(await select.locator('option').allTextContents()).toEqual(['Auto — fastest that loads', 'ONNX Runtime', 'TensorFlow.js']);
    expect(await select.inputValue()).toBe('auto');
    await select.selectOption('tfjs');
    await expect.poll(() => page.textContent('[data-testid=ft-estimate]'), { timeout: SAFETY_NET }).toMatch(/1\s*steps/);
    await page.screenshot({ path: screenshotPath('finetune-advanced-runtime') });
    await page.click('[data-testid=ft-start]');
    await expect.poll(() => page.textContent('[data-testid=ft-state]'), { timeout: SAFETY_NET, interval: 500 }).toBe('completed');

    const store = openStore({ home: engine.home, readonly: true });
    try {
      expect(store.runs.get(3).config).toMatchObject({ runtime: 'tfjs' });
    } finally {
      store.close();
    }
    await expect.poll(() => page.textContent('[data-testid=ft-step-train] h2')).toMatch(/· run 3 · TensorFlow\.js$/);
    await page.click('a[data-page=runs]');
    await expect.poll(() => page.locator('[data-testid=run-row]').count()).toBe(3);
    expect(
      await page
        .locator('[data-testid=run-row]', { has: page.locator('button.link', { hasText: /^3$/ }) })
        .locator('[data-testid=run-runtime]')
        .textContent(),
    ).toBe('TensorFlow.js');
  });
});
