// Web-mode end-to-end helpers: an engine started as a real process on a fresh
// home folder, and Debian's Chromium driven by playwright-core.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const ARTIFACTS = path.join(ROOT, 'test/artifacts');
export const META_TOKENIZER = path.resolve(ROOT, '../shared/reference/mobilellm-tokenizer/tokenizer.model');
export const CHROMIUM = process.env.MLW_CHROMIUM ?? '/usr/bin/chromium';

export interface Engine {
  url: string;
  origin: string;
  home: string;
  proc: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/** Starts `mlw serve` on a free port with its own MLW_HOME; resolves once it prints its URL. */
export async function startEngine(opts: { home?: string; env?: Record<string, string> } = {}): Promise<Engine> {
  const home = opts.home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-e2e-home-'));
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/mlw.js'), 'serve'], {
    env: { ...process.env, MLW_HOME: home, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine did not start:\n${out}`)), 60_000);
    proc.stdout!.on('data', () => {
      const m = /Open (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`engine exited with ${code}:\n${out}`)));
  });
  return {
    url,
    origin: new URL(url).origin,
    home,
    proc,
    output: () => out,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

export interface App {
  engine: Engine;
  browser: Browser;
  page: Page;
  /** Closes the browser and stops the engine. */
  close(): Promise<void>;
}

/** The engine in web mode on a fresh home, and a Chromium page showing the app. */
export async function openApp(viewport: { width: number; height: number }, env?: Record<string, string>): Promise<App> {
  const engine = await startEngine({ env });
  const browser = await launchBrowser();
  const page = await browser.newPage({ viewport });
  await page.goto(engine.url);
  return {
    engine,
    browser,
    page,
    async close() {
      await browser.close();
      await engine.stop();
    },
  };
}

/** Imports a model folder on the Models page and waits for its details. */
export async function importModel(page: Page, dir: string): Promise<void> {
  await page.click('a[data-page=models]');
  await page.fill('[data-testid=import-path]', dir);
  await page.click('[data-testid=import-button]');
  await page.waitForSelector('[data-testid=model-details]');
}

export function chromiumAvailable(): boolean {
  return fs.existsSync(CHROMIUM);
}

/** A tiny MobileLLM with the real 32k vocabulary and Meta's tokenizer, with a long context so answers take a while. */
export function tinyChatModel(dir: string): string | null {
  if (!fs.existsSync(META_TOKENIZER)) return null;
  fs.mkdirSync(dir, { recursive: true });
  const src = path.join(ROOT, 'test/fixtures/golden/tiny-realvocab');
  const config = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 2048 }));
  fs.copyFileSync(path.join(src, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  fs.copyFileSync(META_TOKENIZER, path.join(dir, 'tokenizer.model'));
  return dir;
}

export function screenshotPath(name: string): string {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, `${name}.png`);
}
