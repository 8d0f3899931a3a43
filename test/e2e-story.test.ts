// A new user's whole story in web mode on a fresh home, one step after the
// other as a person would take them: the first start's welcome view, a
// download from the (fake, local) Hub, a chat with the bundled model, a tiny
// LoRA fine-tune started from the wizard and paused, the page reloaded, the
// run resumed and followed from the Runs page to its end, base and fine-tuned
// answers compared on the user's own prompt, "Quantize it" merging the adapter
// first, and the merged model exported as GGUF. A screenshot of each step goes
// to test/artifacts/story-*.png. Every wait ends on a selector the app's events
// put on the page; the limits only catch a hang on a slow, loaded machine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { bundledResources } from '../engine/server/resources';
import { startFakeHub, tinyRepo, type FakeHub } from './helpers/fake-hub';
import { chromiumAvailable, openApp, screenshotPath, type App } from './helpers/web';

const SAFETY_NET = 600_000;
const resources = bundledResources();
const OWN_PROMPT = 'What is the sea like at night?';

describe.skipIf(!resources.defaultModel || !chromiumAvailable())("a new user's story in web mode", () => {
  let hub: FakeHub;
  let app: App;
  let page: Page;
  const shot = (name: string) => page.screenshot({ path: screenshotPath(`story-${name}`), fullPage: true });
  const wait = (selector: string) => page.waitForSelector(selector, { timeout: SAFETY_NET });

  beforeAll(async () => {
    hub = await startFakeHub();
    hub.repos.set('facebook/MobileLLM-tiny', tinyRepo());
    app = await openApp({ width: 1400, height: 1000 }, { HF_ENDPOINT: hub.hubUrl, HF_TOKEN: '' });
    page = app.page;
  });
  afterAll(async () => {
    await app?.close();
    await hub?.close();
  });

  it('first start: the welcome view, then a download from the Hub', { timeout: SAFETY_NET }, async () => {
    await wait('[data-testid=welcome]');
    expect(new URL(page.url()).hash).toBe('#/models');
    await shot('1-welcome');
    await page.click('[data-testid=pull-open]');
    await page.fill('[data-testid=pull-repo]', 'facebook/MobileLLM-tiny');
    await page.click('[data-testid=pull-start]');
    await wait('[data-testid=pull-done], [data-testid=pull-error]');
    expect(await page.locator('[data-testid=pull-error]').count()).toBe(0);
    expect(await page.textContent('[data-testid=pull-done]')).toMatch(/Downloaded facebook\/MobileLLM-tiny/);
    // The list follows the engine's models event, which may land a moment after the job's done.
    await page.locator('[data-testid=model-row]', { hasText: 'facebook/MobileLLM-tiny' }).first().waitFor({ timeout: SAFETY_NET });
    await shot('2-download');
  });

  it('chats with the bundled model', { timeout: SAFETY_NET }, async () => {
    await page.click('a[data-page=chat]');
    const option = page.locator('[data-testid=new-chat-model] option', { hasText: '(default)' });
    await page.selectOption('[data-testid=new-chat-model]', (await option.getAttribute('value'))!);
    await page.click('[data-testid=new-chat]');
    await page.fill('[data-testid=composer]', 'What is a whale?');
    await page.click('[data-testid=send]');
    await wait('[data-testid=message-assistant] [data-testid=stop-reason]');
    expect(await page.locator('[data-testid=message-assistant] [data-testid=message-content]').last().textContent()).not.toBe('');
    await shot('3-chat');
  });

  it('starts a tiny LoRA fine-tune from the wizard and pauses it', { timeout: SAFETY_NET }, async () => {
    await page.click('a[data-page=finetune]');
    const option = page.locator('[data-testid=ft-model] option', { hasText: '(default)' });
    await page.selectOption('[data-testid=ft-model]', (await option.getAttribute('value'))!);
    await page.click('[data-testid=ft-next]');
    await page.click('[data-testid=ft-sample]');
    await wait('[data-testid=ft-summary]');
    await page.click('[data-testid=ft-next]');
    await page.click('[data-testid=ft-preset-quick]');
    await page.selectOption('[data-testid=ft-step-method] select >> nth=0', 'lora');
    // Tiny: one sequence per step, short sequences; enough steps that the pause lands before the end.
    await page.getByLabel('Batch size').fill('1');
    await page.getByLabel('Max sequence length').fill('64');
    await page.fill('[data-testid=ft-max-steps]', '40');
    await expect.poll(() => page.textContent('[data-testid=ft-estimate]'), { timeout: SAFETY_NET }).toMatch(/40\s*steps/);
    await page.click('[data-testid=ft-start]');
    await wait('[data-testid=ft-pause]');
    await wait('[data-testid=ft-run]');
    await page.click('[data-testid=ft-pause]');
    await wait('[data-testid=ft-state]:text-matches("^paused at step \\\\d+$")');
    await wait('[data-testid=ft-resume]');
    await shot('4-paused');
  });

  it('after a reload, resumes the run from the Runs page and follows it to its end', { timeout: SAFETY_NET }, async () => {
    await page.reload();
    await page.click('a[data-page=runs]');
    const row = page.locator('[data-testid=run-row]', { hasText: 'lora' });
    await row.locator('[data-testid=run-status]:text-is("paused")').waitFor({ timeout: SAFETY_NET });
    await shot('5-runs-paused');
    await row.locator('[data-testid=run-resume]').click();
    await row.locator('[data-testid=run-follow]').click({ timeout: SAFETY_NET });
    await wait('[data-testid=ft-step-train]');
    await wait('[data-testid=ft-state]:text-is("completed")');
    await shot('6-resumed-completed');
  });

  it("compares base and fine-tuned answers on the user's own prompt", { timeout: SAFETY_NET }, async () => {
    await page.click('[data-testid=ft-next]');
    await wait('[data-testid=ft-step-result]');
    expect(await page.textContent('[data-testid=ft-step-result]')).toMatch(/completed at step 40/);
    await wait('[data-testid=ft-compare]'); // the first comparison starts by itself
    await wait('[data-testid=ft-compare-run]:enabled');
    await page.fill('[data-testid=ft-compare-prompts]', OWN_PROMPT);
    await page.click('[data-testid=ft-compare-run]');
    await wait(`[data-testid=ft-compare] td:text-is("${OWN_PROMPT}")`);
    const cells = await page.locator('[data-testid=ft-compare] tbody tr').first().locator('td').allTextContents();
    expect(cells[0]).toBe(OWN_PROMPT);
    // Greedy answers: the fine-tuned model speaks like the dataset's old sailor.
    expect(cells[2]).toMatch(/^Aye, /);
    await shot('7-compare');
  });

  it('quantizes the result after merging the adapter into its base, then exports it as GGUF', { timeout: SAFETY_NET }, async () => {
    await page.click('[data-testid=merge-then-quantize]');
    await wait('[data-testid=quant-form]');
    await wait('[data-testid=quant-start]:enabled');
    const merged = (await page.locator('[data-testid=quant-model] option:checked').textContent())!.trim();
    await page.click('[data-testid=quant-start]');
    await wait('[data-testid=quant-report]');
    await shot('8-quantized');
    await page.click('a[data-page=models]');
    await page
      .locator('[data-testid=model-row]', { hasText: merged.split(' ')[0] })
      .first()
      .click();
    await page.click('[data-testid=model-export]');
    await wait('[data-testid=export-panel]');
    await page.check('[data-testid=export-format-gguf]');
    await page.click('[data-testid=export-start]');
    await wait('[data-testid=export-done], [data-testid=export-error]');
    expect(await page.locator('[data-testid=export-error]').count(), (await page.textContent('[data-testid=export-error]').catch(() => '')) ?? '').toBe(0);
    expect(await page.textContent('[data-testid=export-done]')).toMatch(/gguf/i);
    await shot('9-exported');
  });
});
