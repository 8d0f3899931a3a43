// End to end: a short LoRA fine-tune of a tiny model through the wizard, in
// web mode with Chromium: pick the model, the bundled sample dataset (its
// preview highlights the answers), the quick preset with a few steps, watch the
// run, see the curve and the finished checkpoint, then the Runs page.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chromiumAvailable, importModel, openApp, screenshotPath, tinyChatModel, type App } from './helpers/web';

// Every wait below ends on an event or a selector; this limit only catches a hang (a loaded 2-core machine is slow, not stuck).
const SAFETY_NET = 600_000;
const modelDir = tinyChatModel(fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-ft-model-')));

describe.skipIf(!modelDir || !chromiumAvailable())('fine-tuning wizard in web mode', () => {
  let app: App;
  let page: Page;

  beforeAll(async () => {
    app = await openApp({ width: 1280, height: 900 });
    page = app.page;
    await importModel(page, modelDir!);
  });
  afterAll(() => app?.close());

  it('checks a dataset: line-numbered errors for a bad file, a highlighted preview for the sample', async () => {
    await page.click('a[data-page=finetune]');
    // The imported model, chosen by name: the bundled default model is listed first.
    const option = page.locator('[data-testid=ft-model] option', { hasText: path.basename(modelDir!) });
    await page.selectOption('[data-testid=ft-model]', (await option.getAttribute('value'))!);
    await page.click('[data-testid=ft-next]');
    const bad = path.join(os.tmpdir(), `mlw-bad-${Date.now()}.jsonl`);
    fs.writeFileSync(bad, '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n{not json\n{"prompt":"x"}\n');
    await page.fill('[data-testid=ft-data-path]', bad);
    await page.click('[data-testid=ft-inspect]');
    await page.waitForSelector('[data-testid=ft-issues]');
    const issues = await page.textContent('[data-testid=ft-issues]');
    expect(issues).toMatch(/line 2:/);
    expect(issues).toMatch(/line 3:/);
    await page.click('[data-testid=ft-sample]');
    await page.waitForSelector('[data-testid=ft-summary]');
    expect(await page.textContent('[data-testid=ft-summary]')).toMatch(/64\s*examples/);
    expect(await page.locator('[data-testid=ft-preview] .learn').first().textContent()).toMatch(/Aye,/);
    await page.screenshot({ path: screenshotPath('finetune-dataset') });
  });

  it(
    'estimates memory and time, then trains with live progress and a loss curve',
    async () => {
      await page.click('[data-testid=ft-next]');
      await page.click('[data-testid=ft-preset-quick]');
      await page.fill('[data-testid=ft-max-steps]', '6');
      await expect.poll(() => page.textContent('[data-testid=ft-estimate]'), { timeout: SAFETY_NET }).toMatch(/6\s*steps/);
      await page.screenshot({ path: screenshotPath('finetune-settings') });
      await page.click('[data-testid=ft-start]');
      await page.waitForSelector('[data-testid=ft-step-train]');
      // The status line follows the job's events: wait for its word, not for a time.
      await page.waitForSelector('[data-testid=ft-state]:text-is("completed")', { timeout: SAFETY_NET });
      await page.waitForSelector('[data-testid=ft-step-train] canvas', { timeout: SAFETY_NET });
      await page.screenshot({ path: screenshotPath('finetune-training') });
    },
    SAFETY_NET,
  );

  it(
    'shows the result, compares answers and lists the run with its checkpoint',
    async () => {
      await page.click('[data-testid=ft-next]');
      await page.waitForSelector('[data-testid=ft-step-result]');
      expect(await page.textContent('[data-testid=ft-step-result]')).toMatch(/completed at step 6/);
      await page.waitForSelector('[data-testid=ft-compare]', { timeout: SAFETY_NET });
      expect(await page.locator('[data-testid=ft-compare] tbody tr').count()).toBeGreaterThan(0);
      await page.screenshot({ path: screenshotPath('finetune-result') });
      await page.click('a[data-page=runs]');
      await page.waitForSelector('[data-testid=run-row]');
      expect(await page.textContent('[data-testid=run-status]')).toBe('completed');
      // The run trained the model picked in step 1, not the first one listed (the bundled model).
      expect(await page.textContent('[data-testid=run-row]')).toContain(path.basename(modelDir!));
      await page.locator('[data-testid=run-row] button.link').first().click();
      await page.waitForSelector('[data-testid=run-detail]');
      expect(await page.textContent('[data-testid=run-detail]')).toMatch(/lora/);
      // Evaluate the checkpoint (the adapter merged into its base): perplexity in its row and among the evaluations.
      await page.locator('[data-testid=checkpoint-row] [data-testid=checkpoint-evaluate]').last().click();
      await expect
        .poll(() => page.locator('[data-testid=checkpoint-eval]').last().textContent(), { timeout: SAFETY_NET, interval: 500 })
        .toMatch(/^ppl \d+\.\d\d$/);
      expect(await page.textContent('[data-testid=evaluations]')).toMatch(/run \d+ · step 6.*held-out\.txt/);
      await page.screenshot({ path: screenshotPath('runs') });
      // Chat with the checkpoint: it becomes a model of its own and the chat opens on it.
      await page.locator('[data-testid=checkpoint-row] [data-testid=checkpoint-chat]').last().click();
      await page.waitForSelector('[data-testid=composer]');
      await page.fill('[data-testid=composer]', 'Who are you?');
      await page.click('[data-testid=send]');
      await page.waitForSelector('[data-testid=regenerate]', { timeout: SAFETY_NET });
      expect(await page.locator('[data-testid=message-assistant] [data-testid=message-content]').last().textContent()).not.toBe('');
      await page.click('a[data-page=models]');
      expect(await page.locator('[data-testid=model-row]', { hasText: /-run\d+-step6/ }).count()).toBe(1);
    },
    SAFETY_NET,
  );
});
