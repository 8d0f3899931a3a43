// End to end in web mode with Chromium: how the chat window shows answers.
// Answers are Markdown (lists, inline code, code blocks with a copy button),
// never HTML: a model's output is untrusted, so HTML in it stays text. Each
// answer says why it ended, an empty one says "(empty)", the header names
// the model and runtime, and the title and export buttons stay in place
// with Settings open. The page has a favicon.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { openStore } from '../engine/store/open';
import { chromiumAvailable, launchBrowser, screenshotPath, startEngine, tinyChatModel, type Engine } from './helpers/web';

// Waits end on selectors the app's events put on the page; this limit only catches a hang on a slow, loaded machine.
const SAFETY_NET = 600_000;

const modelDir = tinyChatModel(fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-render-model-')));

const HOSTILE = '<img src=x onerror="window.__injected = 1"> <script>window.__injected = 2</script>';
const MARKDOWN_ANSWER = [
  'Here is the plan:',
  '',
  '- read the **data**',
  '- run `npm test`',
  '',
  '```js',
  "console.log('hello');",
  '```',
  '',
  HOSTILE,
  '',
  '[a link](javascript:window.__injected=3)',
].join('\n');

let chatId: number;

/** A home with the tiny model and a chat whose answers were written by "the model": Markdown with hostile HTML in it, and an empty one. */
function homeWithChat(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-render-home-'));
  const store = openStore({ home });
  try {
    const model = store.models.add({ name: 'tiny-chat', source: 'imported', format: 'safetensors', path: modelDir! });
    const chat = store.chats.create({
      title: 'A conversation with a rather long title that has to give way to the buttons beside it',
      modelId: model.id,
      sampling: { maxNewTokens: 16, seed: 3 },
    });
    chatId = chat.id;
    const q1 = store.messages.add({ chatId: chat.id, parentId: null, role: 'user', content: 'A plan, please, with code.' });
    const a1 = store.messages.add({
      chatId: chat.id,
      parentId: q1.id,
      role: 'assistant',
      content: MARKDOWN_ANSWER,
      contentTokens: 60,
      timings: { tokensPerSecond: 20, finish: 'length', model: 'tiny-chat', runtime: 'onnx' },
    });
    const q2 = store.messages.add({ chatId: chat.id, parentId: a1.id, role: 'user', content: 'And then?' });
    store.messages.add({ chatId: chat.id, parentId: q2.id, role: 'assistant', content: '', contentTokens: 0, timings: { tokensPerSecond: 0, finish: 'eos' } });
  } finally {
    store.close();
  }
  return home;
}

describe.skipIf(!modelDir || !chromiumAvailable())('chat answers in web mode', () => {
  let engine: Engine;
  let browser: Browser;
  let page: Page;
  const answers = () => page.locator('[data-testid=message-assistant]');

  beforeAll(async () => {
    engine = await startEngine({ home: homeWithChat() });
    browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 1100, height: 820 }, permissions: ['clipboard-read', 'clipboard-write'] });
    page = await context.newPage();
    page.on('pageerror', (e) => {
      throw e;
    });
    await page.goto(`${engine.url}#/chat/${chatId}`);
    await page.waitForSelector('[data-testid=message-assistant]');
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    if (engine) fs.rmSync(engine.home, { recursive: true, force: true });
  });

  it('renders an answer as Markdown: a list, inline code, a code block whose Copy button copies it', async () => {
    const first = answers().first().locator('[data-testid=message-content]');
    expect(await first.locator('ul > li').allTextContents()).toEqual(['read the data', 'run npm test']);
    expect(await first.locator('li strong').textContent()).toBe('data');
    expect(await first.locator('li code').textContent()).toBe('npm test');
    expect(await first.locator('pre code').textContent()).toBe("console.log('hello');");
    await first.locator('[data-testid=copy-code]').click();
    await expect.poll(() => first.locator('[data-testid=copy-code]').textContent(), { timeout: 10_000 }).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("console.log('hello');");
    await page.screenshot({ path: screenshotPath('chat-markdown') });
  });

  it('shows HTML in an answer as text: no element, no script, no javascript: link', async () => {
    const first = answers().first().locator('[data-testid=message-content]');
    expect(await first.locator('img, script, iframe').count()).toBe(0);
    expect(await first.textContent()).toContain('<img src=x onerror="window.__injected = 1">');
    expect(await first.textContent()).toContain('<script>window.__injected = 2</script>');
    expect(await first.locator('a').getAttribute('href')).toBeNull();
    await first.locator('a').click();
    expect(await page.evaluate(() => (window as { __injected?: number }).__injected)).toBeUndefined();
  });

  it('says why each answer ended, and shows an empty answer as "(empty)"', async () => {
    expect(await answers().first().locator('[data-testid=stop-reason]').textContent()).toBe('length limit');
    const empty = answers().nth(1);
    expect(await empty.locator('[data-testid=empty-answer]').textContent()).toBe('(empty)');
    expect(await empty.locator('[data-testid=stop-reason]').textContent()).toBe('end of text');
  });

  it('a new answer records why it ended and the runtime it ran on, and the header names model and runtime', { timeout: SAFETY_NET }, async () => {
    await page.fill('[data-testid=composer]', 'Tell me about the sea.');
    await page.click('[data-testid=send]');
    await expect.poll(() => answers().count(), { timeout: 30_000 }).toBe(3);
    const reason = answers().nth(2).locator('[data-testid=stop-reason]');
    await reason.waitFor({ timeout: SAFETY_NET });
    const store = openStore({ home: engine.home, readonly: true });
    const stored = store.messages.get(Number(await answers().nth(2).getAttribute('data-message-id')));
    store.close();
    const labels = { eos: 'end of text', stop: 'stop string', length: 'length limit', context: 'context full', cancelled: 'stopped' };
    expect(stored.timings?.finish).toBeDefined();
    expect(await reason.textContent()).toBe(labels[stored.timings!.finish!]);
    expect(stored.timings?.model).toBe('tiny-chat');
    expect(stored.timings?.runtime).toBe('onnx');
    expect(await page.textContent('[data-testid=chat-model]')).toMatch(/^tiny-chat · ONNX Runtime · template /);
  });

  it('keeps the title and the export buttons in place, in view, with Settings open', async () => {
    const boxes = () =>
      Promise.all(['chat-title', 'export-markdown', 'export-json', 'settings-toggle'].map((id) => page.locator(`[data-testid=${id}]`).boundingBox()));
    const closed = await boxes();
    await page.click('[data-testid=settings-toggle]');
    await page.waitForSelector('[data-testid=chat-settings]');
    const open = await boxes();
    expect(open).toEqual(closed);
    for (const box of open) {
      expect(box!.width).toBeGreaterThan(20);
      expect(box!.x + box!.width).toBeLessThanOrEqual(1100);
    }
    await page.screenshot({ path: screenshotPath('chat-settings-open') });
  });

  it("the model page gives the config's context as such when the trained one is not known", async () => {
    await page.click('a[data-page=models]');
    await page.locator('[data-testid=model-row]', { hasText: 'tiny-chat' }).click();
    await expect.poll(() => page.textContent('[data-testid=model-context]'), { timeout: 10_000 }).toMatch(/^\s*2048 tokens \(config\)\s*$/);
  });

  it('the page has an icon, served with the app', async () => {
    const href = await page.locator('link[rel=icon]').getAttribute('href');
    expect(href).toBe('./favicon.svg');
    const icon = await page.evaluate(async (h) => {
      const r = await fetch(h);
      return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
    }, href!);
    expect(icon.status).toBe(200);
    expect(icon.type).toMatch(/svg/);
    expect(icon.body).toMatch(/^<svg /);
  });
});
