// End to end, "Run on a GPU machine" in web mode: the wizard writes its
// configuration as a job folder and shows the command to type; the job is run
// with PyTorch (here on CPU, as a GPU box would run it) and imported on the
// Runs page, where it is a run trained by PyTorch with its curve and machine.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chromiumAvailable, importModel, openApp, screenshotPath, type App } from './helpers/web';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { jobCurve, runJob, torchMissing, torchPython } from './helpers/torch-job';
import { wizardSettings } from './helpers/wizard';

const py = torchPython();
const work = tempDir('e2e-gpu-job');
const modelDir = tinyModelDir(work);
const dataset = writeJsonl(path.join(work, 'arithmetic.jsonl'), arithmeticChats(16));
const STEPS = 4;

describe.skipIf(!chromiumAvailable() || torchMissing(py) !== null)('Run on a GPU machine', () => {
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

  it('writes the job from the wizard, and its run comes back through the Runs page', { timeout: 600_000 }, async () => {
    await wizardSettings(page, dataset, STEPS);
    await page.click('[data-testid=gpu-job-export]');
    await page.waitForSelector('[data-testid=gpu-job-command]', { timeout: 120_000 });
    const dir = (await page.textContent('[data-testid=gpu-job-dir]'))!;
    expect(dir.startsWith(path.join(app.engine.home, 'exports'))).toBe(true);
    expect(await page.textContent('[data-testid=gpu-job-command]')).toMatch(/torchrun --nproc_per_node=.* train\.py/);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'job.json'), 'utf8'))).toMatchObject({ totalSteps: STEPS });
    await page.screenshot({ path: screenshotPath('gpu-job-written') });

    runJob(py!, dir); // what the GPU machine does
    expect(jobCurve(dir)).toHaveLength(STEPS);

    await page.click('a[data-page=runs]');
    await page.fill('[data-testid=job-import-path]', dir);
    await page.click('[data-testid=job-import]');
    await page.waitForSelector('[data-testid=job-import-note]', { timeout: 60_000 });
    expect(await page.textContent('[data-testid=job-import-note]')).toMatch(
      new RegExp(`Recorded run \\d+: completed at step ${STEPS} \\(${STEPS} new steps\\) — ran on `),
    );
    const runRow = page.locator('[data-testid=run-row]').first();
    await expect.poll(() => runRow.textContent(), { timeout: 30_000 }).toContain('PyTorch (job)');
    await page.screenshot({ path: screenshotPath('gpu-job-imported') });
  });
});
