// End to end, Models page in web mode: download a model from a (fake, local)
// Hugging Face Hub with a progress bar, the explanation a gated repo gives
// without a token, then evaluate the downloaded model and find the result on
// the model and on the Runs page.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { startFakeHub, tinyRepo, type FakeHub } from './helpers/fake-hub';
import { chromiumAvailable, openApp, screenshotPath, type App } from './helpers/web';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

describe.skipIf(!chromiumAvailable())('Models page: Hub download and evaluation', () => {
  let hub: FakeHub;
  let app: App;
  let page: Page;

  beforeAll(async () => {
    hub = await startFakeHub();
    hub.repos.set('facebook/MobileLLM-tiny', tinyRepo({ token: 'hf_right' }));
    app = await openApp({ width: 1280, height: 900 }, { HF_ENDPOINT: hub.hubUrl, HF_TOKEN: '' });
    page = app.page;
    await page.click('a[data-page=models]');
  });
  afterAll(async () => {
    await app?.close();
    await hub?.close();
  });

  it('explains what to do when a gated repo refuses the download', async () => {
    await page.click('[data-testid=pull-open]');
    await page.fill('[data-testid=pull-repo]', 'facebook/MobileLLM-tiny');
    await page.click('[data-testid=pull-start]');
    await page.waitForSelector('[data-testid=pull-error]', { timeout: 30_000 });
    const error = await page.textContent('[data-testid=pull-error]');
    expect(error).toMatch(/facebook\/MobileLLM-tiny is gated: accept the license at .*facebook\/MobileLLM-tiny, create a read token at .*settings\/tokens/);
    expect(error).toMatch(/HTTP 401/);
    const rows = await page.locator('[data-testid=model-row]').allTextContents();
    expect(rows.some((r) => r.includes('MobileLLM-tiny'))).toBe(false);
  });

  it('downloads with a token, shows progress, and lists and selects the model', { timeout: SAFETY_NET }, async () => {
    await page.fill('[data-testid=pull-token]', 'hf_right');
    await page.click('[data-testid=pull-start]');
    await page.waitForSelector('[data-testid=pull-done]', { timeout: SAFETY_NET });
    expect(await page.textContent('[data-testid=pull-done]')).toMatch(/Downloaded facebook\/MobileLLM-tiny \(\d+(\.\d)? KB\)/);
    await page.waitForSelector('[data-testid=model-details]');
    expect(await page.textContent('[data-testid=model-details] h2')).toBe('facebook/MobileLLM-tiny');
    expect(await page.textContent('[data-testid=model-details]')).toMatch(/facebook--MobileLLM-tiny/);
    // The token went to the Hub, never to the CDN.
    expect(hub.log.some((l) => l.server === 'hub' && l.authorization === 'Bearer hf_right')).toBe(true);
    expect(hub.log.filter((l) => l.server === 'cdn').every((l) => l.authorization === undefined)).toBe(true);
    await page.screenshot({ path: screenshotPath('models-download') });
  });

  it('evaluates the model: perplexity on the held-out text, on the model and on the Runs page', { timeout: SAFETY_NET }, async () => {
    await page.click('[data-testid=evaluate]');
    await page.waitForSelector('[data-testid=evaluation-row]', { timeout: SAFETY_NET });
    const row = await page.textContent('[data-testid=evaluation-row]');
    expect(row).toMatch(/held-out\.txt \(\d+ tokens\)/);
    const ppl = Number(/ppl (\d+\.\d+)/.exec(row!)![1]);
    // An untrained tiny model: near-uniform over its 512 tokens, never better than a trained one.
    expect(ppl).toBeGreaterThan(50);
    expect(ppl).toBeLessThan(5000);
    await page.screenshot({ path: screenshotPath('models-evaluation') });
    await page.click('a[data-page=runs]');
    await page.waitForSelector('[data-testid=evaluations] [data-testid=evaluation-row]');
    expect(await page.textContent('[data-testid=evaluations] [data-testid=evaluation-row]')).toMatch(
      new RegExp(`facebook/MobileLLM-tiny.*held-out\\.txt.*ppl ${ppl.toFixed(2)}`),
    );
  });
});
