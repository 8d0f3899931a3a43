// Chat speed as the user sees it: time to first token and tokens/s measured in
// the browser (web mode, Chromium, DOM updates of the answer) against the
// engine's own numbers for the same answer. Target: within 10%.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { preset } from '../engine/model/presets';
import { randomModel } from '../engine/model/init';
import { saveModel } from '../engine/io/checkpoint';
import { initBackend } from '../engine/backend/select';
import { chromiumAvailable, importModel, META_TOKENIZER, openApp } from '../test/helpers/web';
import WebSocket from 'ws';
import { median } from './harness';
import type { Suite } from './suites';

async function modelFolder(): Promise<string> {
  const dir = path.join(os.tmpdir(), 'mlw-bench-125m');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    await initBackend();
    const model = randomModel({ ...preset('125M'), torchDtype: 'float32' }, 7);
    await saveModel(model, dir);
    model.dispose();
  }
  fs.copyFileSync(META_TOKENIZER, path.join(dir, 'tokenizer.model'));
  return dir;
}

/** A protocol client over the engine's WebSocket (same token as the page). */
async function engineApi(url: string): Promise<(method: string, params: unknown) => Promise<unknown>> {
  const u = new URL(url);
  const ws = new WebSocket(`ws://${u.host}/ws?token=${u.searchParams.get('token')}`);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  let next = 1;
  const waiting = new Map<number, (f: { result?: unknown; error?: { message: string } }) => void>();
  ws.on('message', (d) => {
    const f = JSON.parse(String(d));
    if (typeof f.id === 'number') waiting.get(f.id)?.(f);
  });
  return (method, params) =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, (f) => (f.error ? reject(new Error(f.error.message)) : resolve(f.result)));
      ws.send(JSON.stringify({ id, method, params }));
    });
}

export const suite: Suite = {
  name: 'web',
  async run(emit) {
    if (!chromiumAvailable() || !fs.existsSync(META_TOKENIZER)) {
      console.error('web bench skipped: needs /usr/bin/chromium and ../shared tokenizer.model');
      return;
    }
    const dir = await modelFolder();
    const { engine, page, close } = await openApp({ width: 1280, height: 720 });
    try {
      await importModel(page, dir);
      await page.click('a[data-page=chat]');
      const api = await engineApi(engine.url);
      const ui: { ttft: number; rate: number }[] = [];
      const eng: { ttft: number; rate: number }[] = [];
      for (let run = 0; run < 4; run++) {
        await page.click('[data-testid=new-chat]');
        await page.waitForSelector('[data-testid=composer]');
        const chatId = Number(new URL(page.url()).hash.split('/')[2]);
        await api('chats.update', { id: chatId, sampling: { maxNewTokens: 128, seed: run, temperature: 0.8 } });
        // Record when the answer's text changes on screen, from the click on Send.
        await page.evaluate(() => {
          const w = window as unknown as { __times: number[]; __t0: number };
          w.__times = [];
          new MutationObserver(() => {
            const el = [...document.querySelectorAll('[data-testid=message-assistant] [data-testid=message-content]')].pop();
            if (el && el.textContent && el.textContent.replace('▍', '').length) w.__times.push(performance.now());
          }).observe(document.querySelector('[data-testid=messages]')!, { subtree: true, childList: true, characterData: true });
          document.querySelector('[data-testid=send]')?.addEventListener('click', () => (w.__t0 = performance.now()), { capture: true, once: true });
        });
        await page.fill('[data-testid=composer]', 'Write a few sentences about the sea.');
        await page.click('[data-testid=send]');
        await page.waitForSelector('[data-testid=regenerate]', { timeout: 300_000 });
        const { t0, times } = await page.evaluate(() => {
          const w = window as unknown as { __times: number[]; __t0: number };
          return { t0: w.__t0, times: w.__times };
        });
        const view = (await api('chats.get', { id: chatId })) as {
          messages: { role: string; contentTokens: number; timings: { firstTokenMs: number; tokensPerSecond: number } }[];
        };
        const answer = view.messages.find((m) => m.role === 'assistant')!;
        if (run === 0) continue; // the first answer also loads the model
        // Tokens reach the screen in batches; the rate is tokens over the time from the first to the last update.
        ui.push({ ttft: times[0] - t0, rate: (answer.contentTokens - 1) / ((times[times.length - 1] - times[0]) / 1000) });
        eng.push({ ttft: answer.timings.firstTokenMs, rate: answer.timings.tokensPerSecond });
      }
      const uiRate = median(ui.map((u) => u.rate));
      const engRate = median(eng.map((e) => e.rate));
      const uiTtft = median(ui.map((u) => u.ttft));
      const engTtft = median(eng.map((e) => e.ttft));
      emit({
        what: 'chat_ui_tokens_per_s',
        backend: 'web mode',
        shape: '125M random, 128 new',
        median: +uiRate.toFixed(1),
        unit: 'tokens/s',
        engine: +engRate.toFixed(1),
        ratio: +(uiRate / engRate).toFixed(3),
      });
      emit({
        what: 'chat_ui_ttft',
        backend: 'web mode',
        shape: '125M random, 10-token prompt',
        median: +uiTtft.toFixed(0),
        unit: 'ms',
        engine: +engTtft.toFixed(0),
        ratio: +(uiTtft / engTtft).toFixed(3),
      });
    } finally {
      await close();
    }
  },
};
