// End to end, in web mode with Chromium: the fine-tuning wizard follows the
// run its job names (with an earlier fine-tune in the database), its status
// comes from the job's events (never "done / paused" beside "See the result"),
// and Pause then Resume act on that run; then the Runs page manages runs at
// any time: a job waiting behind the training run says so (after a reload
// too) and is cancelled; a run is paused there, the page reloaded, resumed
// there and completes; runs are compared, renamed and deleted (asking first,
// checkpoints removed from disk). A tiny model and arithmetic chats keep the training short;
// every wait is for what the page shows, with generous limits as a safety net.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chromiumAvailable, importModel, openApp, screenshotPath, type App } from './helpers/web';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { wizardSettings } from './helpers/wizard';

const work = tempDir('e2e-runs');
const modelDir = tinyModelDir(work);
const dataset = writeJsonl(path.join(work, 'arithmetic.jsonl'), arithmeticChats(64));
/** Steps of the run that is paused and resumed: long enough to click Pause while it trains, short enough to finish. */
const LONG = 300;
const LONG_WAIT = 300_000;
/** A safety net only: every step waits for what the page shows. */
const TEST_LIMIT = 900_000;

/** Starts a fine-tune of the tiny model on the arithmetic chats from the wizard's first step. */
async function startFromWizard(page: Page, maxSteps: number): Promise<void> {
  await wizardSettings(page, dataset, maxSteps);
  await page.click('[data-testid=ft-start]');
  await page.waitForSelector('[data-testid=ft-step-train]');
}

const row = (page: Page, runId: number) => page.locator(`[data-testid=run-row][data-run="${runId}"]`);
const statusOf = (page: Page, runId: number) => row(page, runId).locator('[data-testid=run-status]').textContent();

describe.skipIf(!chromiumAvailable())('runs in web mode', () => {
  let app: App;
  let page: Page;

  beforeAll(async () => {
    app = await openApp({ width: 1400, height: 900 });
    page = app.page;
    await importModel(page, modelDir);
  });
  afterAll(async () => {
    await app?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it(
    'the wizard shows the run it started, not an earlier one; Pause then Resume act on it',
    async () => {
      await startFromWizard(page, 2);
      await expect.poll(() => page.textContent('[data-testid=ft-state]'), { timeout: LONG_WAIT }).toBe('completed');
      expect(await page.textContent('[data-testid=ft-run]')).toBe('run 1');

      // A new wizard (the page reloaded) with run 1 in the database.
      await page.reload();
      await startFromWizard(page, LONG);
      await page.waitForSelector('[data-testid=ft-pause]', { timeout: LONG_WAIT });
      await expect.poll(() => page.textContent('[data-testid=ft-run]'), { timeout: LONG_WAIT }).toBe('run 2');
      await page.click('[data-testid=ft-pause]');
      await expect.poll(() => page.textContent('[data-testid=ft-state]'), { timeout: LONG_WAIT }).toMatch(/^paused at step \d+$/);
      // Paused: Resume, and no result to see.
      expect(await page.locator('[data-testid=ft-resume]').count()).toBe(1);
      expect(await page.locator('[data-testid=ft-step-train] [data-testid=ft-next]').count()).toBe(0);
      await page.screenshot({ path: screenshotPath('runs-wizard-paused') });

      await page.click('[data-testid=ft-resume]');
      await expect.poll(() => page.textContent('[data-testid=ft-state]'), { timeout: LONG_WAIT }).toBe('training');
      expect(await page.textContent('[data-testid=ft-run]')).toBe('run 2');
      await page.click('a[data-page=runs]');
      await expect.poll(() => statusOf(page, 2), { timeout: LONG_WAIT }).toMatch(/^running/);
      expect(await statusOf(page, 1)).toBe('completed');
    },
    TEST_LIMIT,
  );

  it(
    'a job waiting behind the training run says so, in the status bar and the Runs page, and is cancelled there',
    async () => {
      await row(page, 1).locator('[data-testid=run-open]').click();
      await page.locator('[data-testid=checkpoint-row] [data-testid=checkpoint-evaluate]').last().click();
      const waiting = page.locator('[data-testid=status-job-waiting]');
      await expect.poll(() => waiting.textContent(), { timeout: 30_000 }).toMatch(/^evaluating run 1 step 2 .* · waiting for fine-tuning/);
      expect(await page.locator('[data-testid=queue-job]', { hasText: 'evaluating run 1' }).locator('[data-testid=queue-job-state]').textContent()).toMatch(
        /^waiting for fine-tuning/,
      );
      // A reloaded page still shows it (a waiting job announces nothing until it starts).
      await page.reload();
      await expect.poll(() => waiting.textContent(), { timeout: 30_000 }).toMatch(/^evaluating run 1 step 2 .* · waiting for fine-tuning/);
      await page.locator('[data-testid=job-queue]').scrollIntoViewIfNeeded();
      await page.screenshot({ path: screenshotPath('runs-queue') });
      await waiting.locator('[data-testid=status-job-cancel]').click();
      await expect.poll(() => waiting.count(), { timeout: 30_000 }).toBe(0);
      expect(await page.locator('[data-testid=queue-job]', { hasText: 'evaluating run 1' }).count()).toBe(0);
      expect(await statusOf(page, 2)).toMatch(/^running/); // the training run goes on
    },
    TEST_LIMIT,
  );

  it(
    'pauses a run on the Runs page, resumes it there after a reload, and it completes',
    async () => {
      await row(page, 2).locator('[data-testid=run-pause]').click();
      await expect.poll(() => statusOf(page, 2), { timeout: LONG_WAIT }).toBe('paused');
      await page.reload();
      await expect.poll(() => statusOf(page, 2), { timeout: 30_000 }).toBe('paused');
      await row(page, 2).locator('[data-testid=run-resume]').click();
      await expect.poll(() => statusOf(page, 2), { timeout: LONG_WAIT }).toMatch(/^running/);
      await expect.poll(() => statusOf(page, 2), { timeout: LONG_WAIT }).toBe('completed');
      expect(await row(page, 2).locator('[data-testid=run-best-val]').textContent()).toMatch(/^\d+\.\d{4}$/);
      expect(await row(page, 2).textContent()).toMatch(new RegExp(`tiny-gqa-model.*arithmetic\\.jsonl.*lora.*${LONG}`));
    },
    TEST_LIMIT,
  );

  it(
    'compares runs on one chart, renames one (kept across a reload) and deletes one after asking, its checkpoints gone from disk',
    async () => {
      await row(page, 1).locator('input[type=checkbox]').check();
      await row(page, 2).locator('input[type=checkbox]').check();
      await page.waitForSelector('[data-testid=run-compare] canvas');

      await row(page, 2).locator('[data-testid=run-rename]').click();
      await page.fill('[data-testid=run-name-input]', 'arithmetic, rank 16');
      await page.press('[data-testid=run-name-input]', 'Enter');
      await expect.poll(() => row(page, 2).locator('[data-testid=run-name]').textContent()).toMatch(/^\s*arithmetic, rank 16\s*$/);
      await expect.poll(() => page.textContent('[data-testid=run-compare]')).toMatch(/arithmetic, rank 16/);
      await page.screenshot({ path: screenshotPath('runs-compare') });
      await page.reload();
      await expect.poll(() => row(page, 2).locator('[data-testid=run-name]').textContent(), { timeout: 30_000 }).toMatch(/^\s*arithmetic, rank 16\s*$/);

      const checkpoints = path.join(app.engine.home, 'checkpoints', '1');
      expect(fs.readdirSync(checkpoints).length).toBeGreaterThan(0);
      // Asked first: declining keeps it.
      let question = '';
      page.once('dialog', (d) => {
        question = d.message();
        void d.dismiss();
      });
      await row(page, 1).locator('[data-testid=run-delete]').click();
      expect(question).toMatch(/Delete run 1 with its metrics and checkpoints/);
      expect(await row(page, 1).count()).toBe(1);
      page.once('dialog', (d) => void d.accept());
      await row(page, 1).locator('[data-testid=run-delete]').click();
      await expect.poll(() => row(page, 1).count(), { timeout: 30_000 }).toBe(0);
      expect(fs.existsSync(checkpoints)).toBe(false);
      expect(await row(page, 2).count()).toBe(1);
    },
    TEST_LIMIT,
  );
});
