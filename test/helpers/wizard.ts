// The fine-tuning wizard driven to its settings step: the tiny model
// (test/helpers/train-fixtures tinyModelDir, imported first), a dataset file,
// the quick preset with `maxSteps` steps, and the estimate shown for them.
import { expect } from 'vitest';
import type { Page } from 'playwright-core';

export async function wizardSettings(page: Page, dataset: string, maxSteps: number): Promise<void> {
  await page.click('a[data-page=finetune]');
  const tiny = (await page.locator('[data-testid=ft-model] option', { hasText: /^tiny-gqa-model \(/ }).textContent())!.trim();
  await page.selectOption('[data-testid=ft-model]', { label: tiny });
  await page.click('[data-testid=ft-step-model] [data-testid=ft-next]');
  await page.fill('[data-testid=ft-data-path]', dataset);
  await page.click('[data-testid=ft-inspect]');
  await page.waitForSelector('[data-testid=ft-summary]');
  await page.click('[data-testid=ft-step-data] [data-testid=ft-next]');
  await page.click('[data-testid=ft-preset-quick]');
  await page.fill('[data-testid=ft-max-steps]', String(maxSteps));
  await expect.poll(() => page.textContent('[data-testid=ft-estimate]'), { timeout: 60_000 }).toMatch(new RegExp(`${maxSteps}\\s*steps`));
}
