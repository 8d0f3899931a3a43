// End to end, in web mode with Chromium: the Lab page lists an experiment the
// user put in the home's lab folder (a tiny copy of depth-vs-width), shows its
// question, the paper's claim and its variants, starts it, follows the
// variants' training loss overlaid while it trains, then shows the result
// table beside the paper (paper says / we measured / agrees?) and the plots,
// and exports the report. Screenshots: test/artifacts/lab-*.png. Every wait is
// for what the page shows, with a generous limit as a safety net.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { chromiumAvailable, launchBrowser, screenshotPath, startEngine, type Engine } from './helpers/web';
import { TINY_LAB, writeTinyLab } from './helpers/lab-fixture';

const LIMIT = 600_000;

describe.skipIf(!chromiumAvailable())('the Lab page', () => {
  let engine: Engine;
  let browser: Browser;
  let page: Page;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-lab-'));

  beforeAll(async () => {
    writeTinyLab(path.join(home, 'lab'), path.join(home, 'texts'));
    engine = await startEngine({ home, env: { MLW_THREADS: '1' } });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(engine.url);
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it(
    'starts a tiny experiment, follows its curves and shows the table beside the paper',
    async () => {
      await page.click('a[data-page=lab]');
      await page.waitForSelector(`[data-testid=lab-experiment] option[value="${TINY_LAB}"]`, { state: 'attached' });
      await page.selectOption('[data-testid=lab-experiment]', TINY_LAB);
      await expect.poll(() => page.textContent('[data-testid=lab-question]')).toMatch(/deep and thin model beat a shallow and wide one/);
      expect(await page.locator('[data-testid=lab-variants] tbody tr').allTextContents()).toEqual([
        expect.stringMatching(/^shallow-wide2 layers × 4870\.1k2$/),
        expect.stringMatching(/^deep4 layers × 3268\.4k4$/),
      ]);
      expect(await page.getAttribute('[data-testid=lab-claims] td.agrees', 'data-agrees')).toBe('not measured');
      await page.screenshot({ path: screenshotPath('lab-1-experiment') });

      await page.click('[data-testid=lab-start]');
      // While it trains: the job's phase and the loss of the variants trained so far, overlaid.
      await page.waitForSelector('[data-testid=lab-phase]', { timeout: LIMIT });
      await page.waitForSelector('.chart canvas', { timeout: LIMIT });
      await page.screenshot({ path: screenshotPath('lab-2-training') });

      // Done: every run trained, the claim checked with its numbers.
      await page.waitForSelector('[data-testid=lab-claims] td.agrees:not([data-agrees="not measured"])', { timeout: LIMIT });
      await expect.poll(() => page.textContent('[data-testid=lab-status]'), { timeout: LIMIT }).toBe('4 of 4 runs trained — complete');
      expect(await page.locator('[data-testid=lab-claims] thead th').allTextContents()).toEqual([
        'paper says',
        'we measured (mean ± spread over seeds)',
        'agrees?',
      ]);
      const claim = await page.locator('[data-testid=lab-claims] tbody td').allTextContents();
      expect(claim[0]).toBe('deep has a lower held-out perplexity than shallow-wide');
      expect(claim[1]).toMatch(/^deep \d+\.\d+ ± \d+\.\d+ vs shallow-wide \d+\.\d+ ± \d+\.\d+$/);
      expect(claim[2]).toMatch(/^(yes|no — not reproduced at this scale|within noise — the difference is smaller than the spread over seeds)$/);
      const head = await page.locator('[data-testid=lab-table] thead th').allTextContents();
      expect(head.slice(0, 6)).toEqual(['variant', 'what', 'params', 'depth', 'val loss', 'held-out ppl']);
      const cells = await page.locator('[data-testid=lab-table] tbody tr').nth(1).locator('td').allTextContents();
      expect(cells[0]).toBe('deep');
      expect(cells[head.indexOf('held-out ppl')]).toMatch(/^\d+\.\d\d ± \d+\.\d\d$/);
      await page.waitForSelector('[data-testid=lab-plot-ppl-vs-depth] img');
      await page.waitForSelector('[data-testid=lab-plot-loss-vs-step] img');
      // The plots are drawn: an image that failed to decode has no natural width.
      expect(await page.$eval('[data-testid=lab-plot-loss-vs-step] img', (img) => (img as HTMLImageElement).naturalWidth)).toBe(640);
      expect(await page.locator('.chart canvas').count()).toBeGreaterThan(0);

      await page.click('[data-testid=lab-export]');
      const exported = await page.waitForSelector('[data-testid=lab-exported]');
      const md = /Report written: (\S+report\.md)/.exec((await exported.textContent()) ?? '')?.[1];
      expect(md && path.dirname(path.dirname(md))).toBe(path.join(home, 'exports'));
      expect(fs.readFileSync(md!, 'utf8')).toContain('| paper says | we measured | agrees? |');
      // The page scrolls inside its frame: a tall window shows the table, the claim and the plots at once.
      await page.setViewportSize({ width: 1400, height: 1500 });
      await page.screenshot({ path: screenshotPath('lab-3-result') });
    },
    LIMIT + 60_000,
  );
});
