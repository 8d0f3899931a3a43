// End to end in web mode: a real engine process, a real SQLite home, Debian's
// Chromium. Import a tiny model, chat with streaming, stop mid-answer,
// regenerate (a branch), edit and resend, reload and find it all persisted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chromiumAvailable, importModel, openApp, screenshotPath, tinyChatModel, type App, type Engine } from './helpers/web';

const modelDir = tinyChatModel(fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-model-')));
if (!modelDir) console.warn("Meta's tokenizer.model not found in ../shared/reference: chat end-to-end test skipped");
if (!chromiumAvailable()) console.warn('Chromium not found at /usr/bin/chromium (apt-get install -y chromium): end-to-end tests skipped');

describe.skipIf(!modelDir || !chromiumAvailable())('chat in web mode', () => {
  let app: App;
  let engine: Engine;
  let page: Page;

  beforeAll(async () => {
    app = await openApp({ width: 1280, height: 820 });
    ({ engine, page } = app);
    page.on('pageerror', (e) => {
      throw e;
    });
  });
  afterAll(() => app?.close());

  it('refuses requests without the token and from other origins', async () => {
    expect((await fetch(engine.origin + '/')).status).toBe(401);
    expect((await fetch(engine.origin + '/assets/x.js')).status).toBe(401);
    expect((await fetch(engine.url, { headers: { origin: 'http://evil.example' } })).status).toBe(403);
    expect((await fetch(engine.url)).status).toBe(200);
  });

  it('imports a model folder, and reports a bad one in one line', async () => {
    await page.goto(engine.url);
    await page.click('a[data-page=models]');
    await page.fill('[data-testid=import-path]', '/nonexistent/folder');
    await page.click('[data-testid=import-button]');
    await expect.poll(() => page.textContent('[data-testid=import-error]')).toMatch(/cannot import: .*folder not found/);
    await importModel(page, modelDir!);
    expect(await page.textContent('[data-testid=model-details]')).toMatch(/effective layers from 2 blocks/);
    expect(await page.textContent('[data-testid=backend]')).toMatch(/^(wasm|cpu|tensorflow)$/);
    await page.screenshot({ path: screenshotPath('models') });
  });

  it('streams an answer token by token and stops mid-answer keeping the text', async () => {
    await page.click('a[data-page=chat]');
    await page.click('[data-testid=new-chat]');
    // A fixed seed: sampled answers can end at once, and this test needs a long one to stop mid-way.
    await page.click('[data-testid=settings-toggle]');
    await page.fill('[data-testid=seed]', '3');
    await page.locator('[data-testid=seed]').blur();
    await page.click('[data-testid=settings-toggle]');
    await page.fill('[data-testid=composer]', 'Tell me a long story about a lighthouse.');
    await page.click('[data-testid=send]');
    const answer = page.locator('[data-testid=message-assistant]').last();
    // The text grows while the answer streams.
    await page.waitForSelector('[data-testid=live-rate]');
    const first = (await answer.locator('[data-testid=message-content]').textContent())!.length;
    await expect
      .poll(async () => (await answer.locator('[data-testid=message-content]').textContent())!.length, { timeout: 20_000 })
      .toBeGreaterThan(first + 20);
    await page.screenshot({ path: screenshotPath('chat-streaming') });
    await page.click('[data-testid=stop]');
    await page.waitForSelector('[data-testid=regenerate]');
    const kept = await answer.locator('[data-testid=message-content]').textContent();
    expect(kept!.length).toBeGreaterThan(20);
    expect(await answer.textContent()).toMatch(/stopped/);
    // The chat runs on the fastest runtime, and the status bar says which.
    await expect.poll(() => page.textContent('[data-testid=runtime]'), { timeout: 10_000 }).toBe('onnx');
  });

  it('regenerates as a branch and keeps the earlier answer', async () => {
    const before = await page.locator('[data-testid=message-assistant] [data-testid=message-content]').last().textContent();
    await page.click('[data-testid=regenerate]');
    await page.waitForSelector('[data-testid=stop]');
    await page.click('[data-testid=stop]');
    await page.waitForSelector('[data-testid=regenerate]');
    const nav = page.locator('[data-testid=message-assistant] [data-testid=branch-nav]').last();
    expect(await nav.textContent()).toMatch(/2\/2/);
    await nav.getByLabel('previous version').click();
    expect(await nav.textContent()).toMatch(/1\/2/);
    expect(await page.locator('[data-testid=message-assistant] [data-testid=message-content]').last().textContent()).toBe(before);
    await page.screenshot({ path: screenshotPath('chat-branches') });
  });

  it('edits a question and resends it as a new branch', async () => {
    await page.click('[data-testid=edit]');
    await page.locator('[data-testid=message-user] textarea').fill('Tell me a short story instead.');
    await page.getByText('Save & send').click();
    await page.waitForSelector('[data-testid=stop]');
    await page.click('[data-testid=stop]');
    await page.waitForSelector('[data-testid=regenerate]');
    await expect
      .poll(() => page.locator('[data-testid=message-user] [data-testid=message-content]').last().textContent())
      .toBe('Tell me a short story instead.');
    expect(await page.locator('[data-testid=message-user] [data-testid=branch-nav]').textContent()).toMatch(/2\/2/);
  });

  it('finds the conversation persisted after a reload', async () => {
    await page.reload();
    await page.waitForSelector('[data-testid=chat-item]');
    expect(await page.locator('[data-testid=chat-item]').count()).toBe(1);
    await page.locator('[data-testid=chat-item] a').first().click();
    await page.waitForSelector('[data-testid=message-user]');
    expect(await page.locator('[data-testid=message-user] [data-testid=message-content]').last().textContent()).toBe('Tell me a short story instead.');
    expect(await page.locator('[data-testid=message-user] [data-testid=branch-nav]').textContent()).toMatch(/2\/2/);
    await page.click('[data-testid=settings-toggle]');
    await page.waitForSelector('[data-testid=chat-settings]');
    await page.screenshot({ path: screenshotPath('chat-settings') });
  });

  it('tells the UI when the engine dies instead of leaving it waiting', async () => {
    engine.proc.kill('SIGKILL');
    await expect.poll(() => page.textContent('main'), { timeout: 10_000 }).toMatch(/engine is not connected/);
    await page.screenshot({ path: screenshotPath('engine-lost') });
  });
});
