// End to end: the Inspector on a tiny layer-shared model — switching the
// strategy changes the diagram's arrows and the selected row of the cost
// table; an analysis shows the block-similarity heatmap and block details;
// measured latency fills the table's last columns and names ONNX Runtime.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chromiumAvailable, importModel, openApp, ROOT, screenshotPath, type App } from './helpers/web';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

describe.skipIf(!chromiumAvailable())('inspector in web mode', () => {
  let app: App;
  let page: Page;

  beforeAll(async () => {
    app = await openApp({ width: 1400, height: 1000 });
    page = app.page;
    await importModel(page, path.join(ROOT, 'test/fixtures/golden/tiny-ls-immediate'));
  });
  afterAll(() => app?.close());

  const arrows = async () => page.$$eval('[data-testid=sharing-diagram] [data-testid=sharing-arrow]', (els) => els.map((e) => e.getAttribute('d')));

  it('switches strategy and the diagram and cost table follow', async () => {
    await page.click('a[data-page=inspector]');
    await page.selectOption('[data-testid=inspect-target]', { label: 'tiny-ls-immediate' });
    await page.click('[data-testid=strategy-immediate]');
    await page.waitForSelector('[data-testid=sharing-arrow]');
    const immediate = await arrows();
    expect(immediate.length).toBe(6); // 3 blocks × 2
    const selected = () => page.textContent('[data-testid=cost-table] tr.sel');
    expect(await selected()).toMatch(/^immediate3 → 6/);
    await page.click('[data-testid=strategy-reverse]');
    await expect.poll(arrows).not.toEqual(immediate);
    expect(await selected()).toMatch(/^reverse3 → 6/);
    await page.click('[data-testid=strategy-none]');
    await expect.poll(async () => (await arrows()).length).toBe(3);
    expect(await selected()).toMatch(/^same-storage3 → 3/);
    // Storage is the same in every row; FLOPs grow with the layers.
    const rows = await page.$$eval('[data-testid=cost-row]', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(new Set(rows.slice(0, 4).map((r) => r[3])).size).toBe(1);
    await page.screenshot({ path: screenshotPath('inspector') });
  });

  it('analyzes the model: weight-similarity heatmap and the tensors of a clicked block', { timeout: SAFETY_NET }, async () => {
    await page.click('[data-testid=strategy-immediate]');
    await page.click('[data-testid=inspect-analyze]');
    await page.waitForSelector('[data-testid=heatmap]', { timeout: SAFETY_NET });
    await page.locator('[data-testid=sharing-diagram] g.node').nth(1).click();
    await page.waitForSelector('[data-testid=block-detail]');
    expect(await page.textContent('[data-testid=block-detail]')).toMatch(/Block 1.*layers 2, 3/);
    await page.screenshot({ path: screenshotPath('inspector-analysis'), fullPage: true });
  });

  it("measures latency on ONNX Runtime, the chat's runtime, and says so under the table", { timeout: SAFETY_NET }, async () => {
    await page.click('[data-testid=inspect-latency]');
    await page.waitForSelector('[data-testid=latency-runtime]', { timeout: SAFETY_NET });
    expect(await page.textContent('[data-testid=latency-runtime]')).toMatch(/^Latency measured on ONNX Runtime, as the chat runs: onnx \(onnxruntime-node/);
    // Every row has a decode and a prefill time.
    const cells = await page.$$eval('[data-testid=cost-row]', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(-2).map((td) => td.textContent)));
    expect(cells).toHaveLength(5);
    for (const [decode, prefill] of cells) {
      expect(decode).toMatch(/^\d+\.\d \(×\d+\.\d\d\)$/);
      expect(prefill).toMatch(/^\d+\.\d \(×\d+\.\d\d\)$/);
    }
    await page.screenshot({ path: screenshotPath('inspector-latency'), fullPage: true });
  });
});
