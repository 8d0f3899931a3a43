// End to end, the desktop menu's File › Import Model Folder…: the shell picks
// the folder and hands it to the page through the preload bridge; the page
// goes to Models and imports it. Electron does not run here, so the page gets
// a bridge with the preload's shape (DesktopBridge) that carries the frames
// over the engine's WebSocket instead of IPC, and the test plays the menu.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { DesktopBridge } from '../renderer/src/lib/client';
import { chromiumAvailable, launchBrowser, ROOT, screenshotPath, startEngine, type Engine } from './helpers/web';

declare global {
  interface Window {
    /** What the shell does when the menu item picked `dir`. */
    menuPicked(dir: string): void;
  }
}

/** Runs in the page before the app: a DesktopBridge over WebSocket, and the menu's side of it. */
function installBridge(): void {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  const unsent: string[] = [];
  const importers: ((dir: string) => void)[] = [];
  let receive: (frame: never) => void = () => {};
  let connection: (up: boolean) => void = () => {};
  ws.onopen = () => {
    for (const f of unsent.splice(0)) ws.send(f);
    connection(true);
  };
  ws.onmessage = (m) => receive(JSON.parse(String(m.data)) as never);
  const bridge: DesktopBridge = {
    send: (frame) => (ws.readyState === WebSocket.OPEN ? ws.send(JSON.stringify(frame)) : unsent.push(JSON.stringify(frame))),
    onFrame: (cb) => (receive = cb),
    onConnection: (cb) => (connection = cb),
    onImportFolder: (cb) => importers.push(cb),
    pickFolder: async () => null,
    pickFile: async () => null,
    saveFile: async () => false,
  };
  window.mlwDesktop = bridge;
  window.menuPicked = (dir) => importers.forEach((cb) => cb(dir));
}

describe.skipIf(!chromiumAvailable())('desktop menu: Import Model Folder…', () => {
  let engine: Engine;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    engine = await startEngine();
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    await page.addInitScript(installBridge);
    await page.goto(engine.url);
    await page.waitForSelector('nav a.active');
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
  });

  it('opens the Models page and imports the picked folder from any page', async () => {
    await page.click('a[data-page=runs]');
    const dir = path.join(ROOT, 'test/fixtures/golden/tiny-ls-immediate');
    await page.evaluate((d) => window.menuPicked(d), dir);
    await page.waitForSelector('[data-testid=model-details]', { timeout: 30_000 });
    expect(new URL(page.url()).hash).toBe('#/models');
    expect(await page.textContent('[data-testid=model-details] h2')).toBe('tiny-ls-immediate');
    expect(await page.inputValue('[data-testid=import-path]')).toBe('');
    await page.screenshot({ path: screenshotPath('desktop-menu-import') });
  });

  it('shows why a picked folder cannot be imported, leaving its path in the field', async () => {
    await page.click('a[data-page=chat]');
    const dir = path.join(ROOT, 'test/fixtures/eval');
    await page.evaluate((d) => window.menuPicked(d), dir);
    await page.waitForSelector('[data-testid=import-error]', { timeout: 30_000 });
    expect(await page.textContent('[data-testid=import-error]')).toMatch(/config\.json/);
    expect(await page.inputValue('[data-testid=import-path]')).toBe(dir);
  });
});
